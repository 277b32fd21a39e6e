"""`depix run`: find pixelated faces in a video, reconstruct them, paste them back. Streaming, two passes.

Data flow (`restore.run.run_video` wires it; one function or module per arrow):

  pass 1  decode -> locate mosaics (`depixcli.locate`, in worker threads; or the --boxes sidecar
          (`io.sidecar`) / --region; or detect faces as `depix pixelate` does, for --pixelate) (`restore.find`)
          -> tracks (`faces.track`: build_tracks, then merge_concurrent / link_tracks for split mosaics)
          -> FaceTrack per face (`restore.tracks`): mosaic rect, grid line, block size and smoothed head-crop
             box on every frame; the mosaic classified (`restore.classify`): value kind (block means, centre
             or top-left samples: `locate.values.classify_values`), grid anchor, and how it is restored
             (`config.METHODS` by value kind: the model, samples fused over frames (`restore.fusion`), or out
             of the model's range interpolated / smoothed block values)
  pass 2  (`restore.stacks.reconstruct_pass`) decode -> (--pixelate: mosaic) -> crop each tracked face once,
          the crop grown to cover the whole mosaic rect (FaceTrack.crop_box)            [decode thread]
          -> window stacks of crops (+ grid maps for a grid-input model) -> model in batches
             (`model.reconstructor.Reconstructor`, `restore.stacks.StackScheduler`)   [main thread]
             (point-sampled tracks: each frame's samples instead of a crop, fused over FUSION_REACH frames)
          -> paste (`restore.blend.paste`): evidence step by value kind (`restore.evidence`), colour
             match, mask of the mosaic rect + a few px                                  [paste thread]
          -> encode, audio copied (`io.encode.VideoWriter`)                             [write thread]

Pass 2 holds a bounded window: full frames wait only from decode until their last stack has run
(about w*d + batch frames), crops are kept for w*d frames behind the oldest pending stack. Neither
grows with the video length; `RunStats.max_buffered_frames` / `max_buffered_crops` report the peaks.
The threads' queues and error hand-over live in `restore.pipeline`; --pixelate's scores in `restore.research`.
"""
