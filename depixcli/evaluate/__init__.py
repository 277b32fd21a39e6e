"""`depix eval`, one module per step: `protocols` (the mosaics and samples), `methods` (baselines and models run on
them), `judges` (PSNR, SSIM, identity), `temporal` (flicker, tOF), `metrics` (PSNR and SSIM themselves), `score`
(`evaluate`, the wiring), `report` (table, JSON, grid) and `config` (EvalConfig)."""
