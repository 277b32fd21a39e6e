"""Pure geometry of frames: boxes (`boxes`: the one IoU, scaling), square crops and paste-back (`crop`) and
mosaic grids of constant-colour cells (`mosaic`). Nothing here keeps state between frames."""
