"""Find mosaic (pixelated) regions in frames without help: rectangle, block size and grid phase.

A mosaic is a grid of (nearly) constant cells: horizontal differences vanish except on the vertical grid
lines, where they form straight segments, and likewise vertically. Steps (`locate_mosaics`):

1. Line maps. |x differences| minus the codec noise floor, kept only where they persist over 3 rows
   (grey erosion along the line direction); the same for y. Texture mostly vanishes, grid lines stay.
2. Windows. The frame is cut into `band`-px tiles; windows of 1, 2 and 4 tiles (stride one tile) are
   projected onto x and y (edge projections, cf. patent US8743968's spatial-difference profile). On
   each profile the teeth (values above their 3-neighbourhood mean) are Fourier-analysed: a comb with
   >= 3 teeth spaced p apart scores ~1 at 1/p and its harmonics, texture ~1/sqrt(#teeth). A window
   passes when both axes score >= `window_score` (windows without edges, and the y axis of windows whose
   x axis failed, are skipped); its period is the lowest strong frequency. A tile is mosaic-like when
   most windows of one size that contain it pass.
3. Candidates. Neighbouring mosaic-like tiles with compatible periods (equal or 2x, since a small
   window may lock on a harmonic) form a candidate area. An area that fails steps 4-5 is split into its
   clearly flatter parts (more pixels without differences), which are tried on their own: a mosaic next
   to a regular texture of similar period (e.g. a noisy 8 px background grid) gets grouped with it.
4. Period and phase, per axis, on the area's projections: spectrum peaks are candidate periods (fractional
   sizes included), each refined by weighted least squares on the tooth positions and kept if its grid
   lines collect most of the edges (`on_grid`, chance-corrected). Sub-multiples of the true period pass
   this test; multiples do not. An axis with no candidate while the other has some (a texture of about the
   block size next to the mosaic, e.g. a woven hat behind a face, spoils its profile) is tried again at a
   lower bar (MASKED_ON_GRID), keeping periods close to the other axis's. The largest go on to step 5 first.
5. Cells. On that grid (extended `GROW_CELLS` past the area) every cell interior must be flat
   (std <= `cell_std`, which tolerates H.264 noise); mosaic cells differ from their flat neighbours by a
   step (>= `edge`, lowered towards EDGE_MIN when the flat cells are quiet: dark, low-contrast mosaics)
   that happens on the grid line itself (not a smooth gradient). The rectangle is the bounding box, in
   whole cells, of the largest group of cells with such steps on >= 2 sides (plus other 2-D groups joined
   to it through flat cells: a plain band inside the mosaic), trimmed of border rows and columns that are
   mostly not flat or carry no steps, grown back over rows / columns with steps along them, and extended
   to the frame border over plain flat cells when it is within `BORDER_CELLS` of all four borders (a
   pixelated face crop: the whole frame is the mosaic). A plain backdrop next to a mosaic has no steps, so
   it never joins it. The region needs >= `min_cells` cells each way and mostly flat cells. Flat
   backgrounds (no steps), text and texture (cells not flat, edges off the grid) and lone UI lines (no
   2-D comb) are rejected.
6. Checks on the fitted region. When the rect's grid fits poorly (a texture mixed into the area's
   profiles), the periods are estimated again on the rect alone. Then per axis the period is tested
   against its multiples (x2, x3): if only every m-th grid line carries steps, the fit had locked on a
   sub-harmonic (few cells along that axis make it likely) and the true period is m times it, refined
   on the rect's profile. The region is refitted while it can still grow. Finally regions that touch or
   overlap with the same grid (size and phase) are merged: one mosaic, one region.

Works on frames down to ~96 px mosaics (smaller ones with blocks of ~4 px are often missed).
Frames are `(H, W, 3)` uint8 RGB (or `(H, W)` grey). Modules: `config` (what the locator is tuned by and finds),
`periods` (steps 1, 2, 4), `cells` (steps 5, 6), `regions` (one frame: `locate_mosaics`), `stream` (a video:
`locate_stream`, following known mosaics with `locate_near`) and `values` (what the block values are). Linking
regions over frames into tracks is `depixcli.faces.track`'s job (`depix run`: `depixcli.restore.tracks`).
"""
