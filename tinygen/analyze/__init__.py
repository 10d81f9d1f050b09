"""Analysis of the IR: op support, cost, memory, fit against a board."""
