"""Each fused kernel alone against the PyTorch ops it replaces, on one GPU in one run, at Stable
Diffusion 1.5 / SDXL shapes (fp16): microseconds per call (median of CUDA-event timings), the
speed-up, and the relative L2 error of both against a float32 reference.

    python bench/bench_kernels.py            # needs a CUDA device and a CUDA build of native_diffusers
"""

import datetime
import statistics

import torch
import torch.nn.functional as F

from native_diffusers import _C


def time_us(fn, runs=50):
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def rel_l2(x, ref):
    return (torch.linalg.vector_norm(x.double() - ref.double()) / torch.linalg.vector_norm(ref.double())).item()


def cases(dtype):
    dev = "cuda"

    def rnd(*shape):
        return torch.randn(*shape, device=dev, dtype=dtype)

    for (b, h, lq, lk, d, what) in [(2, 8, 4096, 4096, 40, "SD1.5 self-attn 64x64"),
                                    (2, 8, 4096, 77, 40, "SD1.5 cross-attn 64x64"),
                                    (2, 8, 1024, 1024, 80, "SD1.5 self-attn 32x32"),
                                    (2, 8, 256, 256, 160, "SD1.5 self-attn 16x16"),
                                    (2, 10, 4096, 4096, 64, "SDXL self-attn 64x64"),
                                    (1, 1, 4096, 4096, 512, "VAE mid-block 512x512")]:
        q, k, v = (rnd(b, n, h, d).transpose(1, 2) for n in (lq, lk, lk))
        yield (f"attention {what} (d={d})", lambda q=q, k=k, v=v: _C.ops.attention(q, k, v),
               lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v),
               lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q.float(), k.float(), v.float()))
    for (shape, what) in [((2, 320, 64, 64), "UNet 64x64"), ((2, 1280, 16, 16), "UNet 16x16"),
                          ((1, 128, 512, 512), "VAE decoder 512x512")]:
        x, w, bias = rnd(*shape), rnd(shape[1]), rnd(shape[1])
        add = rnd(shape[0], shape[1])
        yield (f"group_norm+silu {what}",
               lambda x=x, w=w, bias=bias: _C.ops.group_norm(x, 32, w, bias, 1e-5, None, True),
               lambda x=x, w=w, bias=bias: F.silu(F.group_norm(x, 32, w, bias, 1e-5)),
               lambda x=x, w=w, bias=bias: F.silu(F.group_norm(x.float(), 32, w.float(), bias.float(), 1e-5)))
        yield (f"temb add+group_norm+silu {what}",
               lambda x=x, w=w, bias=bias, a=add: _C.ops.group_norm(x, 32, w, bias, 1e-5, a, True),
               lambda x=x, w=w, bias=bias, a=add: F.silu(F.group_norm(x + a[:, :, None, None], 32, w, bias, 1e-5)),
               lambda x=x, w=w, bias=bias, a=add: F.silu(F.group_norm(x.float() + a.float()[:, :, None, None], 32,
                                                                      w.float(), bias.float(), 1e-5)))
    for (shape, what) in [((2, 4096, 320), "UNet 64x64"), ((2, 77, 768), "CLIP")]:
        x, w, bias = rnd(*shape), rnd(shape[-1]), rnd(shape[-1])
        yield (f"layer_norm {what}", lambda x=x, w=w, bias=bias: _C.ops.layer_norm(x, w, bias, 1e-5),
               lambda x=x, w=w, bias=bias: F.layer_norm(x, (x.shape[-1],), w, bias, 1e-5),
               lambda x=x, w=w, bias=bias: F.layer_norm(x.float(), (x.shape[-1],), w.float(), bias.float(), 1e-5))
    for (shape, what) in [((2, 4096, 2560), "UNet 64x64 (320 wide)"), ((2, 1024, 5120), "UNet 32x32")]:
        x = rnd(*shape)

        def torch_geglu(x=x):
            a, g = x.chunk(2, -1)
            return a * F.gelu(g)

        def ref_geglu(x=x):
            a, g = x.float().chunk(2, -1)
            return a * F.gelu(g)

        yield f"geglu {what}", lambda x=x: _C.ops.geglu(x), torch_geglu, ref_geglu


def main():
    if not torch.cuda.is_available():
        raise SystemExit("bench_kernels.py needs a CUDA device")
    if not _C.fused_kernels_available():
        raise SystemExit("native_diffusers was built without kernels/ (no nvcc or a CPU build of torch)")
    dtype = torch.float16
    print(f"# fused kernels vs PyTorch ops, {dtype}; {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"{datetime.date.today()}")
    print("| op | ours us | torch us | speed-up | ours rel L2 | torch rel L2 |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad():
        for name, ours, theirs, ref in cases(dtype):
            expected = ref()
            ours_us, theirs_us = time_us(ours), time_us(theirs)
            print(f"| {name} | {ours_us:.1f} | {theirs_us:.1f} | {theirs_us / ours_us:.2f}x | "
                  f"{rel_l2(ours(), expected):.1e} | {rel_l2(theirs(), expected):.1e} |")


if __name__ == "__main__":
    main()
