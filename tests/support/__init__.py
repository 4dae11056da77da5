"""What the tests share: fakes at the true borders, waiting helpers, harnesses."""
