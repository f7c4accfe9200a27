"""The course around the notebooks: the learning path (which notebook first, how long each
takes, workshop tracks), generated from the notebooks' own metadata (`metadata.lab`)."""
