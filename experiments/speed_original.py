"""The ORIGINAL code's side of ``speed_comparison.py``: one stage of the upstream PyTorch code, timed.

The upstream code is imported from local checkouts given on the command line (fahadshamshad/Clip2Protect,
ShawnXYang/TIP-IM; facenet-pytorch from its wheel, ``pip download --no-deps facenet-pytorch==2.6.0``);
nothing of it is in this repository. Only the patches appended to :data:`PATCHES` are applied, at run
time, and the list travels with every result. Weights are the golden-rule weights the jaxprotect side
converts (``bench_clip2protect._rule_state_dict``), loaded with ``load_state_dict``; missing keys may
only be buffers the upstream modules make themselves (``num_batches_tracked``, FIR kernels, noise).

Where the upstream step is the body of a loop inside a larger function (``Adversarial_Opt.run``, TIP-IM's
``run.py main``), that body is transcribed here statement by statement, calling the upstream modules,
methods and functions for everything else; ``PivotTuning.train`` runs unmodified (``num_steps = 1``).
"""
from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import torch_nms
from speed_common import FACE_BOX_1024, measure, photo, stylegan2_inputs, unit_images

PATCHES: list[str] = []


def _patch(text: str) -> None:
    if text not in PATCHES:
        PATCHES.append(text)


# ------------------------------------------------------------------------------------------------
# imports of the upstream code


def _stub_pkg_resources() -> None:
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import packaging.version

        mod = types.ModuleType("pkg_resources")
        mod.packaging = packaging
        sys.modules["pkg_resources"] = mod
        _patch("clip/clip.py `from pkg_resources import packaging`: pkg_resources (gone from current setuptools) "
               "stood in for by the `packaging` package")


def _torchvision() -> None:
    """Import torchvision; where its compiled ops do not load beside this torch (a wheel built for
    another torch), import its pure-Python modules (transforms, models) without the package __init__."""
    try:
        import torchvision  # noqa: F401
        return
    except Exception:  # e.g. "operator torchvision::nms does not exist"
        for name in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[name]
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit("the original side needs torchvision (transforms, models.vgg16): pip download --no-deps "
                         "torchvision and pass its folder with --pythonpath")
    mod = types.ModuleType("torchvision")
    mod.__path__ = list(spec.submodule_search_locations)
    mod.__file__ = spec.origin
    sys.modules["torchvision"] = mod
    _patch("torchvision: its compiled ops do not load beside this torch, so its package __init__ (which registers "
           "them) is skipped; only pure-Python modules are used (transforms, models.vgg16 for lpips)")


def _fused_leaky_relu(input, bias, negative_slope=0.2, scale=2 ** 0.5):
    # models/stylegan2/op/fused_act.py fused_leaky_relu without its `input = input.cuda()` line
    import torch.nn.functional as F

    rest_dim = [1] * (input.ndim - bias.ndim - 1)
    if input.ndim == 3:
        return F.leaky_relu(input + bias.view(1, *rest_dim, bias.shape[0]), negative_slope=negative_slope) * scale
    return F.leaky_relu(input + bias.view(1, bias.shape[0], *rest_dim), negative_slope=negative_slope) * scale


def import_clip2protect(path: str):
    """Put the Clip2Protect checkout on sys.path and patch its one CUDA-only line; returns its generator module."""
    sys.path.insert(0, path)
    _stub_pkg_resources()
    _torchvision()
    import models.stylegan2.model as sg
    import models.stylegan2.op.fused_act as fused_act

    fused_act.fused_leaky_relu = _fused_leaky_relu
    sg.fused_leaky_relu = _fused_leaky_relu
    _patch("models/stylegan2/op/fused_act.py fused_leaky_relu: the same function without `input = input.cuda()` "
           "(the StyleGAN2 ops are otherwise already pure PyTorch: native upfirdn2d)")
    return sg


def _load(module, state_dict: dict, what: str, allowed: tuple = ()):
    """Load ``state_dict`` non-strictly; a missing key must be a buffer the module makes itself (or match
    ``allowed``), an unexpected key is an error."""
    import torch

    missing, unexpected = module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()},
                                                 strict=False)
    allowed = ("num_batches_tracked", ".kernel", "noises.noise_", *allowed)
    bad = [k for k in missing if not any(a in k for a in allowed)]
    if bad or unexpected:
        raise RuntimeError(f"{what}: rule weights do not fit the upstream module: missing {bad[:5]}, "
                           f"unexpected {list(unexpected)[:5]}")
    return module


def _rule(kind: str):
    """Golden-rule state dict of ``kind`` in the upstream layout (as the jaxprotect side converts it)."""
    import bench_clip2protect

    return bench_clip2protect._rule_state_dict(kind)


def generator(sg, sizes: dict, device):
    """``Generator(size, 512, 8, channel_multiplier)`` with the golden StyleGAN2 rule weights (seed = size),
    drawn in the order of the module's own parameters (= jaxprotect's ``param_shapes`` order)."""
    from helpers.weight_rule import draw, rule_for

    g = sg.Generator(sizes["g_size"], 512, 8, channel_multiplier=sizes["g_cm"])
    rng = np.random.default_rng(sizes["g_size"])
    sd = {k: draw(rule_for(k, tuple(p.shape), "stylegan2", frozenset()), tuple(p.shape), rng)
          for k, p in g.named_parameters()}
    return _load(g, sd, "stylegan2").to(device)


def _noise(noise, device, batch_axis=True):
    import torch

    return [torch.from_numpy(n[None] if batch_axis else n).to(device) for n in noise]


# ------------------------------------------------------------------------------------------------
# stages


def stage_stylegan2(opts: dict, backward: bool):
    import torch

    sg = import_clip2protect(opts["clip2protect"])
    dev = torch.device(opts["device"])
    sizes = opts["sizes"]
    g = generator(sg, sizes, dev).eval()
    for p in g.parameters():
        p.requires_grad_(False)
    wplus, noise = stylegan2_inputs(sizes["g_size"], opts["batch"])
    w = torch.from_numpy(wplus).to(dev)
    nz = _noise(noise, dev)

    if not backward:
        def fn():
            with torch.no_grad():  # as Adversarial_Opt.get_image_gen
                img, _ = g([w], input_is_latent=True, noise=nz)
            _sync(dev)
    else:
        def fn():
            wg = w.clone().requires_grad_(True)
            ng = [n.clone().requires_grad_(True) for n in nz]
            img, _ = g([wg], input_is_latent=True, noise=ng)
            (img ** 2).mean().backward()
            _sync(dev)
    return fn, {"what": "G(W+) under no_grad" if not backward else "mean(G^2) backward to W+ and all noise maps, weights frozen"}


def stage_finetune(opts: dict):
    import torch
    from torch import optim

    sg = import_clip2protect(opts["clip2protect"])
    import lpips  # after the torchvision import work-around
    import pivot_tuning

    dev = torch.device(opts["device"])
    sizes = opts["sizes"]
    pt = pivot_tuning.PivotTuning.__new__(pivot_tuning.PivotTuning)
    pt.num_steps = 1
    pt.lr = 0.0005
    pt.G_ = generator(sg, sizes, dev)
    pt.l2_criterion = torch.nn.MSELoss(reduction="mean")
    pt.optimizer = optim.Adam(pt.G_.parameters(), lr=pt.lr)
    percept = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    # the trunk gets the rule weights; the v0.1 heads and scaling constants stay the wheel's own
    pt.percept = _load(percept, _rule("lpips_vgg"), "lpips_vgg", allowed=("scaling_layer.", "lin")).to(dev)
    _patch("pivot_tuning.py PivotTuning.__init__ (reads pretrained_models/*.pt, `.cuda()`, lpips downloads VGG16): "
           "the same attributes built on the device with the rule weights (LPIPS-VGG: pnet_rand=True, rule trunk, "
           "the wheel's v0.1 heads); PivotTuning.train itself runs unmodified, num_steps = 1 per call")
    wplus, _ = stylegan2_inputs(sizes["g_size"], 1)
    w = torch.from_numpy(wplus).to(dev)
    real = torch.from_numpy(photo(sizes["g_size"]).transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1).to(dev)

    def fn():
        pt.train(w, real)
        _sync(dev)
    return fn, {"what": "PivotTuning.train with num_steps=1 (fresh noise draw + one Adam step over all G weights)"}


def _fr_models(device):
    from models import facenet, ir152, irse

    nets = {
        "mobileface": (irse.MobileFaceNet(512), "mobileface"),
        "facenet": (facenet.InceptionResnetV1(num_classes=8631, device=device), "facenet"),
        "ir152": (ir152.IR_152((112, 112)), "ir152"),
        "irse50": (irse.Backbone(50, 0.6, "ir_se"), "irse50"),
    }
    out = {}
    for name, (net, kind) in nets.items():
        out[name] = _load(net, _rule(kind), kind).to(device).eval()
    _patch("adversarial_optimization.py FaceRecognitionModels (loads ./models/*.pth, device='cuda'): the same four "
           "networks built on the device with the rule weights (the original also keeps two more copies of each)")
    return out


def _patch_clip_load(bench_device):
    import clip
    from clip.model import build_model
    from helpers.clip_helpers import golden_state_dict

    def load(name, device=None, jit=False, download_root=None):
        # clip.load without the download: build_model(state_dict).to(device), .float() on CPU, as clip.load
        # does; on the bench device (NCELoss passes 'cuda' whatever it was given)
        import torch

        device = bench_device

        sd = {k: torch.from_numpy(v) for k, v in golden_state_dict("clip_vitb32.npz").items()}
        model = build_model(sd).to(device)
        if str(device) == "cpu":
            model.float()
        return model, clip.clip._transform(model.visual.input_resolution)

    clip.load = load
    _patch("clip.load('ViT-B/32') (downloads the checkpoint): the same build_model on the rule weights "
           "(fp32 on CPU, fp16 on CUDA, as clip.load)")


def stage_search(opts: dict):
    import torch

    sg = import_clip2protect(opts["clip2protect"])
    from torchvision import transforms  # after the torchvision import work-around

    dev = torch.device(opts["device"])
    sizes = opts["sizes"]
    stub = types.ModuleType("facenet_pytorch")
    stub.MTCNN = lambda *a, **k: None
    sys.modules["facenet_pytorch"] = stub
    _patch("utils/clip2protect_utils.py builds facenet_pytorch.MTCNN(device='cuda') at import: stubbed; the face "
           "box is the spec's fixed FFHQ-like box (244, 187, 764, 891), scaled to the generator size")
    _patch_clip_load(dev)
    import adversarial_optimization as ao
    import criteria.nce_loss as nce_loss

    opt = ao.Adversarial_Opt.__new__(ao.Adversarial_Opt)
    opt.augment = transforms.RandomPerspective(fill=0, p=1, distortion_scale=0.5)
    opt.num_aug = 1
    opt.nce_loss = nce_loss.NCELoss("cuda", clip_model="ViT-B/32")
    opt.nce_loss.device = dev
    _patch("criteria/nce_loss.py NCELoss.__init__ sets self.device = 'cuda' whatever it is given: set to the "
           "bench device after construction")
    opt.source_text, opt.description = "face", "red lipstick"
    fr = _fr_models(dev)
    opt.fr_model_m, opt.fr_model_facenet, opt.fr_model_152, opt.fr_model_50 = (
        fr["mobileface"], fr["facenet"], fr["ir152"], fr["irse50"])
    opt.model, opt.impersonate, opt.margin = "mobile_face", True, 0
    opt.lat_hyp, opt.c_hyp, opt.adv_hyp = 0.01, 0.3, 0.7
    _patch("adversarial_optimization.py Adversarial_Opt.__init__ (reads args, files, checkpoints): the attributes "
           "the step reads set to main.py's defaults; the loop body of Adversarial_Opt.run is transcribed statement "
           "by statement (one call = one iteration)")

    g_ema = generator(sg, sizes, dev).eval()  # torch.load of a tuned module: every parameter requires grad
    wplus, noise = stylegan2_inputs(sizes["g_size"], 1)
    latent = torch.from_numpy(wplus).to(dev)
    # Adversarial_Opt.process_latent minus `latent.cuda()` (on the GPU the stored latents already are CUDA
    # tensors, so requires_grad lands on the caller's latent): W+ and the noise maps below 512 px are optimised
    latent_cl = latent.clone().detach()
    latent.requires_grad = True
    noisss = _noise(noise, dev)
    for nois in noisss:
        nois.requires_grad = nois.shape[2] < 512
    _patch("Adversarial_Opt.process_latent: transcribed without `latent.cuda()` (which makes a new leaf on CPU)")
    img_org_ = opt.get_image_gen(latent, noisss, g_ema)
    optimizer = torch.optim.Adam([latent] + noisss, lr=0.01)
    s = sizes["g_size"] / 1024
    bb = [v * s for v in FACE_BOX_1024]
    with torch.no_grad():
        crop = img_org_[:, :, round(bb[1]):round(bb[3]), round(bb[0]):round(bb[2])]
        norm112 = torch.nn.functional.interpolate((crop - 0.5) * 2, size=(112, 112), mode="bilinear")
        norm160 = torch.nn.functional.interpolate((crop - 0.5) * 2, size=(160, 160), mode="bilinear")
        source = (opt.fr_model_m(norm112), opt.fr_model_facenet(norm160), opt.fr_model_152(norm112),
                  opt.fr_model_50(norm112))
        target = torch.from_numpy(unit_images(1, 256).transpose(0, 3, 1, 2) * 2 - 1).contiguous().to(dev)
        targets = (opt.fr_model_m(torch.nn.functional.interpolate(target, size=(112, 112), mode="bilinear")),
                   opt.fr_model_facenet(torch.nn.functional.interpolate(target, size=(160, 160), mode="bilinear")),
                   opt.fr_model_152(torch.nn.functional.interpolate(target, size=(112, 112), mode="bilinear")),
                   opt.fr_model_50(torch.nn.functional.interpolate(target, size=(112, 112), mode="bilinear")))
    _patch("get_source_embedding / get_target_embeddings (read photos, run MTCNN): the same four embeddings computed "
           "once, before the timed steps, from the generated face crop and a seeded target image")

    def fn():
        # adversarial_optimization.py Adversarial_Opt.run, body of `for i in range(self.steps)`
        optimizer.zero_grad()
        img_gen_, _ = g_ema([latent], input_is_latent=True, noise=noisss)
        img_gen_ = ((img_gen_ + 1) / 2).clamp(0, 1)
        img_gen_aug = torch.cat([opt.augment(img_gen_) for i in range(opt.num_aug)], dim=0)
        c_loss = opt.nce_loss(img_org_, opt.source_text, img_gen_aug, opt.description).sum()
        l2_loss = ((latent_cl - latent) ** 2).sum()
        img_gen = img_gen_[:, :, round(bb[1]) - opt.margin:round(bb[3]) + opt.margin,
                           round(bb[0]) - opt.margin:round(bb[2]) + opt.margin]
        adv = opt.get_adv_loss(img_gen, *source, *targets)
        loss = opt.calculate_loss(opt.model, l2_loss, c_loss, *adv)
        loss.backward()
        latent.grad[0][0:8] = torch.zeros(8, 512)
        optimizer.step()
        _sync(dev)
    return fn, {"what": "one Adversarial_Opt.run iteration (faithful: no network frozen, text features re-encoded)"}


def stage_tipim(opts: dict):
    import scipy.misc
    import torch

    sys.path.insert(0, opts["tipim"])
    sys.path.insert(0, opts["tipim"] + "/networks")
    for name in ("imread", "imsave", "imresize"):
        if not hasattr(scipy.misc, name):
            setattr(scipy.misc, name, None)
    _patch("TIP-IM input_diversify.py `from scipy.misc import imread, imsave` (removed from SciPy, used only for "
           "file I/O): placeholders so the module imports")
    import ArcFace
    from input_diversify import input_diversity
    from mmd import mmd_loss

    dev = torch.device(opts["device"])
    sizes = opts["sizes"]
    net = _load(ArcFace.IR_50((112, 112)), _rule("irse50"), "irse50 (TIP-IM ArcFace = IR-SE-50)").to(dev).eval()
    model = ArcFace.ArcFace.__new__(ArcFace.ArcFace)
    model.out_dims, model.channel, model.input_device = 512, "rgb", dev
    model.output = {"prelogits": (net, 512)}
    _patch("TIP-IM networks/FaceModel.py get_model (downloads model_ir_se50.pth, `.cuda()`): the ArcFace (IR-SE-50) "
           "network gets the rule weights of jaxprotect's irse50 on the device; FaceModel.forward is unchanged")
    _patch("TIP-IM run.py cannot be imported (TensorFlow MTCNN alignment at import): its iteration body, submodular "
           "and Gain3 are transcribed statement by statement; input_diversity(device=...) and "
           "mmd_loss(use_gpu=False on CPU) are called from the checkout")

    batch, target_nums, iters, epsilon = opts["batch"], sizes["tipim_targets"], 100, 12
    alpha, m, gamma = 1.5 * epsilon / iters, 1.0, 0.0
    img_shape = (112, 112)
    aligned = (unit_images(batch, 112, seed=2) * 255).astype(np.float32)
    targets = unit_images(target_nums, 112, seed=3) * 255
    target_feas = model.forward(torch.Tensor(targets).to(dev).permute(0, 3, 1, 2).contiguous()).detach()
    inputs = torch.Tensor(aligned.copy()).to(dev).permute(0, 3, 1, 2).contiguous()
    _patch("TIP-IM run.py `inputs = torch.Tensor(aligned).cuda().permute(0, 3, 1, 2)`: made .contiguous(); current "
           "PyTorch carries the permuted (channels-last) layout through the convolutions and ArcFace's Flatten "
           "`.view` then fails")
    init_feas = model.forward(inputs).detach()
    min_img = torch.clamp(inputs - epsilon, min=0)
    max_img = torch.clamp(inputs + epsilon, max=255)
    state = {"adv": inputs.detach().clone().requires_grad_(True), "sum_grad": torch.zeros_like(inputs)}
    rng = np.random.default_rng(0)
    div_device = "cuda" if dev.type == "cuda" else "cpu"

    def l2distance(x, y):
        return torch.sqrt(torch.sum((x - y) ** 2, dim=1))

    def gain3(adv_fea, init_feas, target_feas, idx=0):
        d1 = l2distance(adv_fea, init_feas)
        d2 = torch.max(torch.exp(d1 - l2distance(adv_fea, target_feas)))
        return torch.log(1.0 + d2)

    def submodular(target_feas, init_feas, tmp_advs, model, gain):
        tmp_advs = torch.cat(tmp_advs)
        gains = torch.zeros(size=(len(target_feas),), dtype=torch.float32)
        tmpadv_feas = model.forward(tmp_advs)
        for idx in range(len(tmpadv_feas)):
            gains[idx] = gain(tmpadv_feas[idx].unsqueeze(0), init_feas, target_feas, idx)
        return torch.argmax(gains)

    def fn():
        # TIP-IM run.py main, body of `for iii in range(iters)` (norm 'l2', gain3)
        adv_images, sum_grad = state["adv"], state["sum_grad"]
        std_proj, std_rotate = rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1)
        tmp_advs, tmp_grads, tmp_losses = [], [], []
        model.zero_grad()
        images = input_diversity(adv_images, std_proj, std_rotate, device=div_device)
        adv_feas = model.forward(images)
        loss_mmd = mmd_loss(adv_images.clone().reshape(batch, -1), inputs.clone().reshape(batch, -1),
                            use_gpu=dev.type == "cuda")
        for idx in range(target_nums):
            model.zero_grad()
            loss_i = torch.mean((adv_feas - init_feas) ** 2)
            loss_t = torch.mean((adv_feas - target_feas[idx]) ** 2)
            loss = loss_t - loss_i + gamma * loss_mmd
            loss.backward(retain_graph=True)
            grad = adv_images.grad.data.clone()
            grad = grad / grad.abs().mean(dim=[1, 2, 3], keepdim=True)
            tmp_sum_grad = m * sum_grad.clone() + grad
            adv_images.grad.data.zero_()
            tmp_adv_images = adv_images.data.clone()
            factor = np.sqrt(np.prod(img_shape) * 3)
            grad2d = tmp_sum_grad.reshape((tmp_sum_grad.size(0), -1))
            gradnorm = grad2d.norm(p=2, dim=1, keepdim=True)
            grad_unit = grad2d / gradnorm
            delta = -torch.reshape(grad_unit, tmp_sum_grad.size()) * alpha * factor
            tmp_adv_images = tmp_adv_images + delta
            tmp_adv_images = torch.max(tmp_adv_images, min_img)
            tmp_adv_images = torch.min(tmp_adv_images, max_img)
            tmp_grads.append(tmp_sum_grad)
            tmp_advs.append(tmp_adv_images)
            tmp_losses.append(loss.data.unsqueeze(0))
        best_idx = submodular(target_feas, init_feas, tmp_advs, model, gain3)
        state["sum_grad"] = tmp_grads[best_idx]
        state["adv"] = tmp_advs[best_idx].detach().requires_grad_(True)
        _sync(dev)
    return fn, {"what": f"one TIP-IM iteration: input diversity, {target_nums} target backward passes, greedy selection"}


def stage_mtcnn(opts: dict):
    import torch
    from PIL import Image

    _torchvision()
    from facenet_pytorch import MTCNN
    from facenet_pytorch.models.utils import detect_face

    try:
        detect_face.batched_nms(torch.zeros((1, 4)), torch.zeros(1), torch.zeros(1, dtype=torch.long), 0.5)
    except Exception:
        detect_face.batched_nms = torch_nms.batched_nms
        _patch("facenet_pytorch detect_face.batched_nms (torchvision's compiled nms, unavailable): a torch "
               "implementation with the same semantics")
    dev = torch.device(opts["device"])
    img = Image.fromarray(photo(opts["sizes"].get("mtcnn_size")))
    # utils/clip2protect_utils.py: MTCNN(image_size=1024, margin=0, post_process=False, select_largest=False)
    mtcnn = MTCNN(image_size=1024, margin=0, post_process=False, select_largest=False, device=dev)

    def fn():
        boxes, probs = mtcnn.detect(img)
        _sync(dev)
        return boxes
    return fn, {"what": f"MTCNN.detect on the {img.size[0]}x{img.size[1]} photo (clip2protect_utils.alignment)"}


def _sync(dev) -> None:
    if dev.type == "cuda":
        import torch

        torch.cuda.synchronize()


STAGES = {
    "stylegan2_forward": lambda o: stage_stylegan2(o, backward=False),
    "stylegan2_forward_backward": lambda o: stage_stylegan2(o, backward=True),
    "search_step": stage_search,
    "finetune_step": stage_finetune,
    "tipim_step": stage_tipim,
    "mtcnn": stage_mtcnn,
}


def run(stage: str, opts: dict) -> dict:
    """Set up ``stage`` of the original code, time it, return the result record."""
    import torch

    if opts["device"] == "cpu":
        _patch("`.cuda()` / device='cuda' in the timed code: the CPU device instead")
    torch.manual_seed(0)
    fn, info = STAGES[stage](opts)
    if opts["device"] != "cpu":
        torch.cuda.reset_peak_memory_stats()
    result = measure(fn, opts["runs"], opts.get("warmup", 1))
    result.update(info)
    result.update({"torch": torch.__version__, "threads": torch.get_num_threads(), "patches": list(PATCHES)})
    if opts["device"] != "cpu":
        result["device_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    return result
