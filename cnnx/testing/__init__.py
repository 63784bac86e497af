"""Procedures and data makers that cnnx's tests and its bench/ scripts share, so a published
figure comes from exactly the code the tests run: photo-like digit sets, the bad-input catalogue,
the kill/resume procedure. Nothing in cnnx imports this package."""
