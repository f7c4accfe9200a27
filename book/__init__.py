"""The course site: `make book` builds the executed notebooks into static HTML (book/build.py)."""
