"""Training (`depix train`), one module per stage of the data flow: `config` (TrainConfig), `data` (crop tracks in
RAM, stacks, prefetch), `stills` (photos as moving stacks), `augment` and `degrade` (clean stack -> randomised
mosaic on the device), `losses` and `perceptual`, `stages` (what a step of "stn" and "recon" does), `loop` (the
`Trainer` and its one stage loop), `validate`, `checkpoint` and `dist` (torchrun)."""
