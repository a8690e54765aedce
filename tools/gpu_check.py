#!/usr/bin/env python
"""The GPU check of mabp: one command (`make gpu-check`, or `python tools/gpu_check.py`) that runs every GPU path in minutes.

1. multi-scale deformable attention on CUDA against the CPU reference (forward and backward; float32 and float64, both
   formulations: the gather `ms_deform_attn` and `ms_deform_attn_grid_sample`);
2. one training step of the paper preset (random initialisation) at batch 7 in fp16 and in bf16: finite loss, and the
   pixel decoder's float32 island in place under autocast (a forward hook reads the dtype of its outputs);
3. the throughput of that step: images/s, peak memory, achieved TFLOP/s (matmul/conv FLOPs of forward + backward counted
   by torch.utils.flop_counter.FlopCounterMode) and the fraction of the GPU's dense tensor-core peak;
4. a DDP smoke test with the NCCL backend on one GPU (world size 1, in a spawned process);
5. about 2 minutes of tiny-preset training on a freshly generated synthetic set, with its validation numbers.

Without CUDA it says so and exits 0 without running anything. Exit status 1 when a check fails. The numbers also go to
a JSON file (--out). `--cpu-smoke` runs the same code on the CPU at toy sizes (the micro model instead of the paper
preset, gloo instead of NCCL, seconds instead of minutes) to check this script itself; its numbers mean nothing.
"""
import argparse, contextlib, json, math, os, re, socket, statistics, subprocess, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))      # run from a checkout without installing

# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA's data sheets: (name tokens, bf16, fp16).
PEAK_TFLOPS = [
    (('H200',), 989.4, 989.4),
    (('H100', 'PCIe'), 756.5, 756.5),
    (('H100', 'NVL'), 835.5, 835.5),
    (('H100',), 989.4, 989.4),          # SXM ("NVIDIA H100 80GB HBM3")
    (('A100',), 312.0, 312.0),
    (('L40S',), 362.05, 362.05),
    (('L4',), 121.0, 121.0),
    (('V100',), None, 125.0),
]

def peak_tflops(name: str, dtype: str):
    "The dense bf16/fp16 peak of a GPU named `name` (as torch.cuda.get_device_name), or None when not in the table."
    toks = set(re.split(r'[\s\-_]+', name))
    for key, bf16, fp16 in PEAK_TFLOPS:
        if all(k in toks for k in key): return bf16 if dtype == 'bf16' else fp16
    return None

def say(*a): print(*a, flush=True)

class Checks:
    "Collects PASS/FAIL lines and numbers; a failing section does not stop the others."
    def __init__(self): self.results, self.failed = {}, []
    @contextlib.contextmanager
    def section(self, name: str):
        say(f'\n== {name}')
        t0 = time.time()
        try: yield self.results.setdefault(name, {})
        except Exception as e:
            self.failed.append(name)
            self.results[name]['error'] = f'{type(e).__name__}: {e}'
            say(f'FAIL {name}: {type(e).__name__}: {e}'); traceback.print_exc(limit=6)
        finally: self.results[name]['seconds'] = round(time.time() - t0, 1)
    def check(self, name: str, ok: bool, what: str):
        say(f"{'PASS' if ok else 'FAIL'} {what}")
        if not ok and name not in self.failed: self.failed.append(name)
        return ok

# 1 ---------------------------------------------------------------------------------------------------------------------
def _deform_inputs(N, hw, M, D, Lq, P, seed, dtype, device):
    "Random inputs whose sampling points keep >= 0.02 px from the bilinear kinks (integer pixel coordinates), some outside the map."
    import torch
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in hw), len(hw)
    value = torch.randn(N, S, M, D, generator=g, dtype=torch.float64)
    size = torch.tensor([(w, h) for h, w in hw], dtype=torch.float64).view(1, 1, 1, L, 1, 2)   # (W, H) per level
    cell = torch.floor(torch.rand(N, Lq, M, L, P, 2, generator=g, dtype=torch.float64) * (size + 2)) - 1    # -1 .. W (or H)
    frac = 0.02 + 0.96 * torch.rand(N, Lq, M, L, P, 2, generator=g, dtype=torch.float64)
    loc = (cell + frac + 0.5) / size            # pixel coordinate loc * W - 0.5 = cell + frac: never near an integer
    att = torch.rand(N, Lq, M, L, P, generator=g, dtype=torch.float64)
    att = att / att.sum((-1, -2), keepdim=True)
    grad = torch.randn(N, Lq, M * D, generator=g, dtype=torch.float64)
    # the float64 reference sees the same (float32-representable) numbers as the float32 run
    return [t.to(torch.float32).to(dtype).to(device) for t in (value, loc, att, grad)]

def _fwd_bwd(fn, hw, value, loc, att, grad):
    import torch
    ins = [t.detach().clone().requires_grad_() for t in (value, loc, att)]
    out = fn(ins[0], torch.tensor(hw), ins[1], ins[2])
    out.backward(grad)
    return [out.detach()] + [t.grad.detach() for t in ins]

def check_deform_attn(c: Checks, dev):
    import torch
    from mabp.deform_attn import ms_deform_attn, ms_deform_attn_grid_sample, ms_deform_attn_naive
    names = ('out', 'grad value', 'grad loc', 'grad attn')
    with c.section('deformable attention') as r:
        # Away from the kinks the sampling is smooth, so float32 must match float64 closely; at a kink the gradient with
        # respect to the location jumps, and any rounding difference would show as a large (meaningless) error.
        # the CPU reference itself: gather op vs the loop-per-point definition (float64, tiny)
        hw0 = [(5, 4), (3, 2)]
        v, l, a, _ = _deform_inputs(1, hw0, 2, 3, 6, 2, 1, torch.float64, 'cpu')
        err = (ms_deform_attn(v, torch.tensor(hw0), l, a) - ms_deform_attn_naive(v, torch.tensor(hw0), l, a)).abs().max().item()
        r['cpu_gather_vs_naive'] = err
        c.check('deformable attention', err < 1e-10, f'CPU gather op = per-point reference (float64): max |diff| {err:.1e}')
        cases = {'small': (2, [(12, 12), (6, 6), (3, 3)], 4, 8, 50, 4), 'paper encoder (batch 2)': (2, [(60, 60), (30, 30), (15, 15)], 8, 32, 4725, 4)}
        for case, (N, hw, M, D, Lq, P) in cases.items():
            ref = None
            for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 2e-4)):
                v, l, a, g = _deform_inputs(N, hw, M, D, Lq, P, 0, torch.float64, 'cpu')
                if ref is None: ref = _fwd_bwd(ms_deform_attn, hw, v, l, a, g)         # CPU float64 reference
                for fname, fn in (('gather', ms_deform_attn), ('grid_sample', ms_deform_attn_grid_sample)):
                    got = _fwd_bwd(fn, hw, *[t.to(dev, dtype) for t in (v, l, a, g)])
                    errs = {n: ((x.double().cpu() - y).abs().max() / y.abs().max().clamp(min=1)).item() for n, x, y in zip(names, got, ref)}
                    key = f'{case} {fname} {str(dtype)[6:]}'
                    r[key] = errs
                    worst = max(errs, key=errs.get)
                    c.check('deformable attention', errs[worst] < tol,
                            f'{key} on {dev} vs CPU float64: max rel. error {errs[worst]:.1e} ({worst}), tolerance {tol:.0e}')
        # speed at the paper's encoder shapes (batch 7), both formulations
        if dev.type == 'cuda':
            v, l, a, g = _deform_inputs(7, [(60, 60), (30, 30), (15, 15)], 8, 32, 4725, 4, 0, torch.float32, dev)
            for fname, fn in (('gather', ms_deform_attn), ('grid_sample', ms_deform_attn_grid_sample)):
                ts = []
                for i in range(6):
                    torch.cuda.synchronize(); t0 = time.perf_counter()
                    _fwd_bwd(fn, [(60, 60), (30, 30), (15, 15)], v, l, a, g)
                    torch.cuda.synchronize()
                    if i: ts.append(1e3 * (time.perf_counter() - t0))
                r[f'fwd+bwd ms (paper encoder, batch 7) {fname}'] = statistics.median(ts)
                say(f'     fwd+bwd at the paper encoder shapes, batch 7, {fname}: {statistics.median(ts):.2f} ms')

# 2, 3 ------------------------------------------------------------------------------------------------------------------
def paper_random_config():
    "The paper preset at random initialisation, in whichever way this mabp version spells it."
    from mabp.model import MABPConfig
    if hasattr(MABPConfig, 'random_parts'):    # weights chosen by name: random initialisation must be asked for
        return MABPConfig.paper(bert_path='random', swin_path='random')
    return MABPConfig.paper()                   # older configs: no paths = BERT-base and Swin-B at random init

def _batch(cfg, B, dev):
    from mabp.model import dummy_batch
    img, ids, am, mask, nt = dummy_batch(cfg, B)
    return dict(image=img.to(dev), input_ids=ids.to(dev), attention_mask=am.to(dev), mask=mask.to(dev), no_target=nt.to(dev))

def check_paper_step(c: Checks, dev, smoke: bool, batch: int, repeats: int):
    import torch, warnings
    from torch.utils.flop_counter import FlopCounterMode
    from mabp.model import MABP, build_criterion, micro_config
    from mabp.train import param_groups, train_step
    name = 'paper preset step'
    with c.section(name) as r:
        cfg = micro_config() if smoke else paper_random_config()
        r['preset'] = 'micro (cpu smoke)' if smoke else 'paper (random init)'
        t0 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.manual_seed(0)
            model = MABP(cfg).to(dev).train()
        crit = build_criterion(cfg).to(dev)
        r['params_M'] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
        say(f'     built {r["preset"]} ({r["params_M"]} M parameters) in {time.time() - t0:.0f} s; batch {batch}, '
            f'{cfg.image_size} px')
        b = _batch(cfg, batch, dev)
        dtypes = []
        hook = model.pixel_decoder.register_forward_hook(
            lambda m, i, o: dtypes.append({o[0].dtype} | {t.dtype for t in o[1]}))
        gpu = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'
        r['device'] = gpu
        sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
        for amp in ('fp16', 'bf16'):
            adt = torch.float16 if amp == 'fp16' else torch.bfloat16
            opt = torch.optim.AdamW(param_groups(model, 0.05), lr=2e-5, fused=dev.type in ('cpu', 'cuda'))
            scaler = torch.amp.GradScaler(dev.type, enabled=amp == 'fp16')
            if dev.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats(dev)
            dtypes.clear()
            out = train_step(model, crit, opt, [b], device=dev, scaler=scaler, clip_grad_norm=0.01, amp_dtype=adt)  # warm-up
            sync()
            loss = float(out['loss'])
            c.check(name, math.isfinite(loss), f'{amp}: one step at batch {batch}, loss {loss:.4f} (finite)')
            island = bool(dtypes) and dtypes[0] == {torch.float32}
            c.check(name, island, f'{amp}: pixel decoder outputs under autocast are {sorted(str(d)[6:] for d in dtypes[0]) if dtypes else "?"}'
                    + ('' if island else ' -- the float32 island of the pixel decoder is MISSING'))
            ts = []
            for _ in range(repeats):
                sync(); t0 = time.perf_counter()
                out = train_step(model, crit, opt, [b], device=dev, scaler=scaler, clip_grad_norm=0.01, amp_dtype=adt)
                sync(); ts.append(time.perf_counter() - t0)
            c.check(name, bool(out['finite']) and math.isfinite(float(out['loss'])), f'{amp}: {repeats} more steps, last loss {float(out["loss"]):.4f}')
            step_s = statistics.median(ts)
            with FlopCounterMode(display=False) as fc:                 # FLOPs of forward + backward (optimizer not counted)
                with torch.autocast(dev.type, dtype=adt):
                    terms = crit(model(b['image'], b['input_ids'], b['attention_mask']), b['mask'], b['no_target'])
                terms['loss'].backward()
            model.zero_grad(set_to_none=True)
            flops = fc.get_total_flops()
            peak = peak_tflops(gpu, amp)
            res = dict(step_ms=round(1e3 * step_s, 1), images_per_s=round(batch / step_s, 2),
                       peak_memory_GB=round(torch.cuda.max_memory_allocated(dev) / 1e9, 2) if dev.type == 'cuda' else None,
                       tflop_per_step=round(flops / 1e12, 3), achieved_tflops=round(flops / step_s / 1e12, 1),
                       dense_peak_tflops=peak, fraction_of_peak=round(flops / step_s / 1e12 / peak, 3) if peak else None,
                       loss=loss, fp32_island=island)
            r[amp] = res
            say(f"     {amp}: {res['step_ms']} ms/step (median of {repeats}), {res['images_per_s']} images/s, peak memory "
                f"{res['peak_memory_GB']} GB, {res['tflop_per_step']} TFLOP per step (fwd+bwd), {res['achieved_tflops']} TFLOP/s"
                + (f" = {100 * res['fraction_of_peak']:.1f}% of the {peak} TFLOP/s dense {amp} peak of {gpu}" if peak
                   else f' ({gpu} is not in the peak table)'))
        hook.remove()
        del model, opt
        if dev.type == 'cuda': torch.cuda.empty_cache()

# 4 ---------------------------------------------------------------------------------------------------------------------
def ddp_child(device: str):
    "Run inside the spawned process: join a process group of one, two DDP training steps of the micro model, print a JSON line."
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from mabp.model import MABP, build_criterion, micro_config
    from mabp.train import param_groups, train_step
    dev = torch.device(device)
    backend = 'nccl' if dev.type == 'cuda' else 'gloo'
    if dev.type == 'cuda': torch.cuda.set_device(dev)
    dist.init_process_group(backend)                     # env://: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    try:
        torch.manual_seed(0)
        cfg = micro_config()
        model = MABP(cfg).to(dev).train()
        net = DDP(model, device_ids=[dev.index] if dev.type == 'cuda' else None, find_unused_parameters=True)
        crit = build_criterion(cfg).to(dev)
        opt = torch.optim.AdamW(param_groups(model), lr=1e-4)
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        b = _batch(cfg, 2, dev)
        for _ in range(2): out = train_step(net, crit, opt, [b], device=dev, clip_grad_norm=1.0)
        t = torch.full((1,), 3.0, device=dev); dist.all_reduce(t)
        after = [p.detach() for p in model.parameters() if p.requires_grad]
        res = dict(backend=dist.get_backend(), world_size=dist.get_world_size(), loss=float(out['loss']), finite=bool(out['finite']),
                   all_reduce_sum=float(t), params_changed=sum(not torch.equal(x, y) for x, y in zip(before, after)), n_params=len(after))
        print('DDP_RESULT ' + json.dumps(res), flush=True)
    finally: dist.destroy_process_group()

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def check_ddp(c: Checks, dev):
    name = 'DDP smoke test'
    with c.section(name) as r:
        env = {**os.environ, 'RANK': '0', 'LOCAL_RANK': '0', 'WORLD_SIZE': '1', 'MASTER_ADDR': '127.0.0.1',
               'MASTER_PORT': str(_free_port()), 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
        p = subprocess.run([sys.executable, __file__, '--ddp-child', str(dev)], env=env, capture_output=True, text=True, timeout=300)
        line = next((l for l in p.stdout.splitlines() if l.startswith('DDP_RESULT ')), None)
        if p.returncode or line is None:
            raise RuntimeError(f'the DDP process exited with {p.returncode}: {(p.stderr or p.stdout)[-1500:]}')
        res = json.loads(line[len('DDP_RESULT '):]); r.update(res)
        want = 'nccl' if dev.type == 'cuda' else 'gloo'
        c.check(name, res['backend'] == want and res['world_size'] == 1, f"process group: backend {res['backend']}, world size {res['world_size']}")
        c.check(name, res['all_reduce_sum'] == 3.0, f"all_reduce over one rank returns the tensor ({res['all_reduce_sum']})")
        c.check(name, res['finite'] and math.isfinite(res['loss']) and res['params_changed'] > 0,
                f"2 DDP training steps: loss {res['loss']:.4f}, {res['params_changed']}/{res['n_params']} parameter tensors updated")

# 5 ---------------------------------------------------------------------------------------------------------------------
def check_tiny_training(c: Checks, dev, seconds: float, steps: int, n_images: int, workdir: Path):
    import dataclasses, torch
    from mabp.synthetic import make_synthetic_gres
    from mabp.train import TrainConfig, train
    name = 'tiny training'
    with c.section(name) as r:
        t0 = time.time()
        root = make_synthetic_gres(workdir / 'synthetic', n_images=n_images, image_size=128, seed=0, progress=False)
        r['data_s'] = round(time.time() - t0, 1)
        say(f'     generated a synthetic set of {n_images} images in {r["data_s"]} s')
        kw = dict(root=str(root), out_dir=str(workdir / 'run'), max_steps=steps, time_budget_s=seconds, eval_splits=('val',),
                  device=str(dev), progress=False, overwrite=True, num_workers=4 if dev.type == 'cuda' else 0)
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        res = train(TrainConfig.tiny(**{k: v for k, v in kw.items() if k in fields}))
        val = res.get('metrics', {}).get('val', {})
        r.update(steps=res.get('step'), stopped=res.get('stopped'), train_time_s=res.get('train_time_s'), loss=res.get('loss'), val=val)
        c.check(name, math.isfinite(res.get('loss', float('nan'))), f"{res.get('step')} steps in {res.get('train_time_s')} s "
                f"(stopped: {res.get('stopped')}), final loss {res.get('loss', float('nan')):.4f}")
        c.check(name, bool(val), 'val: ' + ', '.join(f'{k} {v:.2f}' for k, v in val.items() if isinstance(v, float)))

# -----------------------------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=str(ROOT / 'runs' / 'gpu_check' / 'gpu_check.json'), help='JSON file of the results')
    ap.add_argument('--batch', type=int, default=7, help='batch of the paper-preset step (the paper: 7 per GPU)')
    ap.add_argument('--repeats', type=int, default=5, help='timed steps per precision')
    ap.add_argument('--train-seconds', type=float, default=120, help='time budget of the tiny training')
    ap.add_argument('--train-steps', type=int, default=2000, help='step limit (schedule length) of the tiny training')
    ap.add_argument('--synthetic-images', type=int, default=1000, help='size of the synthetic set generated for it')
    ap.add_argument('--skip', nargs='*', default=[], choices=['deform', 'paper', 'ddp', 'tiny'], help='sections to leave out')
    ap.add_argument('--cpu-smoke', action='store_true', help='run on the CPU at toy sizes to test this script (numbers meaningless)')
    ap.add_argument('--ddp-child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.ddp_child: ddp_child(a.ddp_child); return 0
    import torch
    if not a.cpu_smoke and not torch.cuda.is_available():
        say('gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing to check. '
            'Run `make gpu-check` where a GPU is available.')
        return 0
    if a.cpu_smoke:
        dev = torch.device('cpu')
        a.batch, a.repeats, a.train_seconds, a.train_steps, a.synthetic_images = 2, 1, 5, 3, 60
    else:
        dev = torch.device('cuda', 0)
        p = torch.cuda.get_device_properties(dev)
        say(f'gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}; '
            f'torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}')
    t0 = time.time()
    c = Checks()
    c.results['environment'] = dict(torch=torch.__version__, cuda=torch.version.cuda, device=str(dev),
                                    gpu=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else None, cpu_smoke=a.cpu_smoke)
    with tempfile.TemporaryDirectory(prefix='mabp-gpu-check-') as work:
        if 'deform' not in a.skip: check_deform_attn(c, dev)
        if 'paper' not in a.skip: check_paper_step(c, dev, a.cpu_smoke, a.batch, a.repeats)
        if 'ddp' not in a.skip: check_ddp(c, dev)
        if 'tiny' not in a.skip: check_tiny_training(c, dev, a.train_seconds, a.train_steps, a.synthetic_images, Path(work))
    c.results['total_seconds'] = round(time.time() - t0, 1)
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(c.results, indent=2, default=str))
    say(f'\ngpu_check: {"FAILED: " + ", ".join(c.failed) if c.failed else "all checks passed"} '
        f'({c.results["total_seconds"]:.0f} s); results in {out}')
    return 1 if c.failed else 0

if __name__ == '__main__': sys.exit(main())
