"""The sponsors' data-quality report and the sites' data-query listings (`rescue report`)."""
