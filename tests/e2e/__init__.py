"""End-to-end tests: the whole "push code, it goes live" story, the way users meet it."""
