"""Input and output: video decode (`video`) and encode (`encode`), the one atomic file writer (`files`), the
`--boxes` sidecar format (`sidecar`), progress bars (`progress`) and synthetic test media (`synthetic`)."""
