"""Report writers: they read verify's results and never the other way.

    text    the terminal report and the progress display of device runs
    junit   JUnit XML
    html    a self-contained HTML page with plots
    (JSON is verify's combined payload, written as it is.)
"""
