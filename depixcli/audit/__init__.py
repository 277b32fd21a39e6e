"""`depix audit ANONYMISED --original ORIGINAL`: does an anonymised video still show who is in it?

Modules: `video` (`audit_video`: the two passes wired together), `plan` (pass 1 and the plan), `grid` (grid
analysis), `attacks` (through `depix run`'s restore), `verdict` (config, scores, verdicts, the report) and
`report` (its text, CSV, JSON and contact sheet).

Data flow (two streaming passes over both videos in lockstep, one frame of each at a time; only the frames
between `start` and `start + duration` s, numbered and timed as in the whole video: `window_frames`):

  pass 1  decode both -> refuse different sizes / frame counts -> detect faces on the ORIGINAL (boxes and
          landmarks only are kept) -> face tracks (`track.build_tracks`, as `depix pixelate` makes them)
  plan    per track: the frames scored (those with a detection, evenly spread, at most `frames`), the
          frames of its re-identification gallery entry, the frames of the model's window stacks
  pass 2  decode both -> per track and frame needed: head crops of the original and the anonymised frame
          (the same `geometry.head_box` of the original's face box in both), the mosaic located on the
          anonymised frame (`locate.locate_mosaics` around the face) -> when a track's last needed frame
          has passed: the three attacks, SFace cosines, mosaic analysis, verdict; its crops are dropped

The three leaks of a track, scored on every scored frame against the original's head crop of that frame:
  (a) `anonymised`: the anonymised face as it is;
  (b) `smoothed`: a Gaussian blur of it, sigma `SMOOTH_SIGMA_CELLS` mosaic blocks (anyone can do this);
  (c) `reconstructed`: depix's own reconstruction (`model.reconstructor.Reconstructor`, the model `depix run`
      uses) from window stacks of anonymised head crops, colour-matched and blended over the mosaic as
      `depix run` pastes it. The crop is the original's head box: the attack is told where the face is.
Every candidate is aligned for SFace with the landmarks YuNet found on the ORIGINAL frame
(`identity.SFaceIdentity.embed`), so all are cropped the same way. Per attack: the median cosine, the
share of scored frames above SFace's same-person threshold (`SFACE_THRESHOLD`), and the re-identification
rank: the mean embedding of the attack over the track's query frames against a gallery of one entry per
face track of the video (mean original embedding over that track's gallery frames, `identity.query_span`
/ `identity.gallery_frames`) plus one per `--gallery` photo; rank 1 = the person is the best match.

Mosaic analysis (model-free; explains why a mosaic leaks), on the scored frames where a mosaic grid is
found over the face: block size (px) and blocks across the mosaic; whether the grid is anchored to the
image (its phase in frame coordinates stays put while the face moves) or to the face (the face's phase
in the grid stays put); how many distinct grid phases the face shows (`PHASE_BINS` per axis: each new
phase samples the face differently, the evidence a multi-frame model combines; one when the face's phase
stays within `ANCHOR_SPREAD`); whether the block values
are means of the original's pixels, centre samples, or neither (quantised, noised, stale or filled).

Verdict per track: `leaks` when any attack has a median cosine >= `HOLD_MEDIAN` (and `NULL_MARGIN` above
what a featureless face of the original's mean colour scores, which SFace puts at up to ~0.3), or puts at
least `LEAK_SHARE` of the frames above `SFACE_THRESHOLD` (and `NULL_MARGIN` above the featureless face on
that frame), or re-identifies the person at rank 1 in a
gallery of at least `REID_MIN_GALLERY` entries (chance <= 1 / that) where a featureless face of the same
colour does not (see `judge`); else `holds`. Where the original's face is not reliable (narrower than
`SMALL_FACE`, detector score below `RELIABLE_SCORE`, contrast below `MIN_CONTRAST`, too few frames with fine
detail, or SFace not matching it to itself across frames: `unreliable_reasons`) identity is `not judged`.
Two identity judges. SFace is the judge above: its thresholds (`HOLD_MEDIAN`, `NULL_MARGIN`, `LEAK_SHARE`,
`REID_MIN_GALLERY`) were set on SFace's scores of these attacks, and the verdict keeps following them. But SFace
can be a training loss of the reconstruction model (the shipped model's, `w_identity` in its weights' header:
`AuditReport.sface_trained`), and a model trained to raise SFace's cosine can raise it without bringing the
person back. So, when dlib and its weights import (`identity.load_dlib`; `AuditConfig.dlib`, `--no-dlib`), every
scored frame is also judged by dlib's ResNet descriptor, which no depix model trains on, exactly as `depix eval`
judges it (`identity.DlibIdentity`: dlib's 5-point landmarks fitted once on the original's crop inside YuNet's
face box, reused for every candidate): per attack the median Euclidean distance, the share of frames under
dlib's same-person distance `DLIB_THRESHOLD` (0.6) where the featureless face of that frame is not, and the
re-identification rank by cosine of descriptors against the same gallery (every track's gallery frames, the
`--gallery` photos). `verdict.judge_dlib` makes dlib's own call (leaks at `LEAK_SHARE` of frames matched, or a
rank 1 in a gallery of `REID_MIN_GALLERY`); it does not change the verdict, and each track whose two calls
differ says so in its sentence, the dlib table, what to do and the JSON (`judges_agree`). Why not let dlib
decide: its one calibrated number (0.6) is for clean faces, and on 8 val clips (`bench/bench_audit.py --every 5
--max-frames 40 --frames 10 --no-recommend`, a gallery of 34: chance rank 1 is 3 % per attack) it called 2 of 8
`--secure` tracks a leak, each only by a rank 1 at median distances 0.69-0.74 with no frame under 0.6, where
SFace's own chance rank 1 called another one: either judge alone deciding adds its chance rank-1 calls. When dlib is
absent, the report says so in one line and the audit runs as before. The strength ladder and the per-frame
as-is match of the timeline use SFace only (dlib costs about twice SFace's time per face).
The leak timeline (`depixcli.exposure`: coverage and the as-is cosine on every frame of every track, in
pass 2) overrides both: a track with an exposed frame leaks. The video leaks when a track does.
`strength_ladder` mosaics the original's own crops as `depix pixelate --blocks N` would and attacks them
the same way, for the recommendation. Output (text, table, CSV, JSON, sheet): `depixcli.audit.report`.
Frames are `(H, W, 3)` uint8 RGB; crops `(S, S, 3)` uint8 RGB.
"""
