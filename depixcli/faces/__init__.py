"""Faces: detection (`detect`: YuNet, CenterFace, S3FD), tracking (`track`: the one tracker, boxes per frame
-> smoothed tracks), identity embeddings and galleries (`identity`: SFace ONNX, dlib) and SFace as a torch
network for training losses (`sface_torch`)."""
