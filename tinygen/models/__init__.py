"""Reference model architectures (MLPerf Tiny shapes) that tests and the bench build."""
