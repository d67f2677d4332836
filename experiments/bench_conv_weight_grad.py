"""Weight gradient of a 3x3 'same' convolution on this CPU: XLA's convolution backward vs matrix products.

    .venv/bin/python experiments/bench_conv_weight_grad.py H C [variants]

x, g [1, H, H, C], w (C, C, 3, 3). Variants: ``xla_fwd`` (the forward, for scale), ``xla_wgrad``
(jax.vjp of lax.conv w.r.t. w: XLA's weight-gradient convolution), ``im2col9`` (one matrix product
with the 9 shifted copies side by side), ``cols3`` (3 column shifts, 3 products), ``shift9`` (9
products on shifted views: what ``stylegan2_ops.conv_weight_grad`` does), ``flat9`` / ``flat9_split2``
(padded-width flat layout, contiguous row slices), ``shift9_2d`` (shift9 with each product a 2-D
dot contracting the pixel axis), ``rows3_2d`` (``stylegan2_ops._weight_grad_shifted_rows``: 3 column
shifts of g side by side, one 2-D product per row offset), ``library`` (``conv_weight_grad`` as
shipped, which picks by layer width). Prints median wall and process CPU ms of 3 calls
after a warm-up, the relative difference from XLA's gradient, and the load average.
"""
import functools, time, sys, os, statistics
import jax, jax.numpy as jnp, numpy as np
from jax import lax
H, C = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((1, H, H, C)), jnp.float32)
g = jnp.asarray(rng.standard_normal((1, H, H, C)), jnp.float32)
w = jnp.asarray(rng.standard_normal((C, C, 3, 3)), jnp.float32)
def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "OIHW", "NHWC"))
def xla_wgrad(x, g):
    return jax.vjp(lambda w: conv(x, w), w)[1](g)[0]
def xla_fwd(x, w):
    return conv(x, w)
def im2col9(x, g):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    cols = jnp.concatenate([xp[:, a:a+h, b:b+wd] for a in range(3) for b in range(3)], -1)  # [n,h,w,9i]
    dw = jnp.einsum("nhwo,nhwk->ok", g, cols)  # [o, 9i]
    return dw.reshape(-1, 3, 3, i).transpose(0, 3, 1, 2)
def cols3(x, g):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    x3 = jnp.concatenate([xp[:, :, b:b+wd] for b in range(3)], -1)  # [n,h+2,w,3i]
    dws = [jnp.einsum("nhwo,nhwk->ok", g, x3[:, a:a+h]) for a in range(3)]
    return jnp.stack(dws, 1).reshape(-1, 3, 3, i).transpose(0, 3, 1, 2)
def shift9(x, g):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    dws = [jnp.einsum("nhwo,nhwi->oi", g, xp[:, a:a+h, b:b+wd]) for a in range(3) for b in range(3)]
    return jnp.stack(dws, -1).reshape(-1, i, 3, 3)
def flat9(x, g):
    # padded-width flat layout: output p = h*(W+2)+w, tap offset kh*(W+2)+kw is a contiguous row slice
    n, h, wd, i = x.shape
    o = g.shape[-1]
    xp = jnp.pad(x, ((0,0),(1,2),(1,1),(0,0))).reshape(n, (h+3)*(wd+2), i)
    gp = jnp.pad(g, ((0,0),(0,0),(0,2),(0,0))).reshape(n, h*(wd+2), o)
    L = h*(wd+2)
    dws = [jnp.einsum("npo,npi->oi", gp, lax.slice_in_dim(xp, a*(wd+2)+b, a*(wd+2)+b+L, axis=1)) for a in range(3) for b in range(3)]
    return jnp.stack(dws, -1).reshape(o, i, 3, 3)
def flat9_split(x, g, parts=2):
    n, h, wd, i = x.shape
    o = g.shape[-1]
    xp = jnp.pad(x, ((0,0),(1,2),(1,1),(0,0))).reshape(n, (h+3)*(wd+2), i)
    gp = jnp.pad(g, ((0,0),(0,0),(0,2),(0,0))).reshape(n, h*(wd+2), o)
    L = h*(wd+2)
    gp = gp.reshape(n, parts, L//parts, o)
    dws = []
    for a in range(3):
        for b in range(3):
            xs = lax.slice_in_dim(xp, a*(wd+2)+b, a*(wd+2)+b+L, axis=1).reshape(n, parts, L//parts, i)
            dws.append(jnp.einsum("nspo,nspi->oi", gp, xs))
    return jnp.stack(dws, -1).reshape(o, i, 3, 3)
def shift9_2d(x, g):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    g2 = g.reshape(-1, g.shape[-1])
    dws = [lax.dot_general(g2, xp[:, a:a+h, b:b+wd].reshape(-1, i), (((0,), (0,)), ((), ()))) for a in range(3) for b in range(3)]
    return jnp.stack(dws, -1).reshape(-1, i, 3, 3)
def shift9_kb(x, g, parts=4):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    g3 = g.reshape(parts, -1, g.shape[-1])
    dws = [lax.dot_general(g3, xp[:, a:a+h, b:b+wd].reshape(parts, -1, i), (((1,), (1,)), ((0,), (0,)))).sum(0)
           for a in range(3) for b in range(3)]
    return jnp.stack(dws, -1).reshape(-1, i, 3, 3)
def im2col9_2d(x, g):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    cols = jnp.concatenate([xp[:, a:a+h, b:b+wd] for a in range(3) for b in range(3)], -1).reshape(-1, 9 * i)
    dw = lax.dot_general(g.reshape(-1, g.shape[-1]), cols, (((0,), (0,)), ((), ())))  # [o, 9i]
    return dw.reshape(-1, 3, 3, i).transpose(0, 3, 1, 2)
def cols3_2d(x, g):
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    x3 = jnp.concatenate([xp[:, :, b:b+wd] for b in range(3)], -1)  # [n,h+2,w,3i]
    g2 = g.reshape(-1, g.shape[-1])
    dws = [lax.dot_general(g2, x3[:, a:a+h].reshape(-1, 3 * i), (((0,), (0,)), ((), ()))) for a in range(3)]
    return jnp.stack(dws, 1).reshape(-1, 3, 3, i).transpose(0, 3, 1, 2)
def fwdconv(x, g):
    # the weight gradient as a forward convolution: batch = input channels, kernel = the cotangent image
    n, h, wd, i = x.shape
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    lhs = jnp.transpose(xp, (3, 1, 2, 0))  # [I, H+2, W+2, N]
    rhs = jnp.transpose(g, (1, 2, 0, 3))  # [H, W, N, O]
    out = lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # [I, 3, 3, O]
    return jnp.transpose(out, (3, 0, 1, 2))
def rows3_2d(x, g):
    from jaxprotect.models.stylegan2_ops import _weight_grad_shifted_rows
    return jnp.moveaxis(_weight_grad_shifted_rows(x, g, 3), 0, -1).reshape(g.shape[-1], x.shape[-1], 3, 3)
def library(x, g):
    from jaxprotect.models.stylegan2_ops import conv_weight_grad
    return conv_weight_grad(x, g, 3)
ref = jax.jit(xla_wgrad)(x, g)
fns = {"xla_fwd": (xla_fwd, (x, w)), "xla_wgrad": (xla_wgrad, (x, g)), "im2col9": (im2col9, (x, g)), "cols3": (cols3, (x, g)),
       "shift9": (shift9, (x, g)), "flat9": (flat9, (x, g)), "flat9_split2": (flat9_split, (x, g)),
       "shift9_2d": (shift9_2d, (x, g)), "rows3_2d": (rows3_2d, (x, g)),
       "shift9_kb4": (shift9_kb, (x, g)), "shift9_kb2": (functools.partial(shift9_kb, parts=2), (x, g)),
       "im2col9_2d": (im2col9_2d, (x, g)), "cols3_2d": (cols3_2d, (x, g)), "fwdconv": (fwdconv, (x, g)), "library": (library, (x, g))}
for name in (sys.argv[3].split(",") if len(sys.argv) > 3 else fns):
    f, a = fns[name]
    fj = jax.jit(f)
    out = jax.block_until_ready(fj(*a))
    if name != "xla_fwd":
        err = float(jnp.max(jnp.abs(out - ref)) / jnp.max(jnp.abs(ref)))
    else:
        err = 0
    ws, cs = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fj(*a))
        ws.append(time.perf_counter()-t); cs.append(time.process_time()-c)
    print(f"{H}x{C} {name:14s} wall {statistics.median(ws)*1e3:7.1f} ms cpu {statistics.median(cs)*1e3:7.1f} ms relerr {err:.1e} load {os.getloadavg()[0]:.1f}", flush=True)
