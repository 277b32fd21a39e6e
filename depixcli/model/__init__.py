"""The network and its files: `config` (ModelConfig, stack window), `grid` (grid maps, warps), `nets` (STN, U-Net,
CompactNet, PatchGAN), `weights` (self-describing safetensors files, the shipped default) and `reconstructor`
(inference on uint8 stacks, as `depix run`, `depix audit` and `depix eval` use it)."""
