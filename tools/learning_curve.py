"""Learning curve of one training recipe on a dev slice carved out of the synthetic *train* split (issue 12).

The dev slice is chosen BY IMAGE: a train image is in it when `sha1('mabp-curve-dev:<image_id>') % dev_mod == 0`
(first 8 hex digits); every sentence of every train ref on such an image is one dev item (evaluation mode). Training
sees only the other train images: the script writes a derived dataset root (`<data>_curve`) whose refs file renames the
dev refs' split to 'curvedev' (instances and images are symlinks to the original), and trains on its 'train' split with
`mabp.train.train` itself. val/testA/testB are never read.

Training runs in segments of `--eval_every` steps: each segment is one `train(cfg)` call with `stop_at_step` (the schedule
follows `--max_steps`), which resumes exactly from OUT/last.pt and saves it again at the end; then the checkpoint is
evaluated on the dev slice (`mabp.evaluate.evaluate_model` on a `Subset`) and one row is appended to the CSV at once.
A killed run continues with `--resume` (same arguments): it re-trains at most one segment.

Usage:
  python tools/learning_curve.py                      # tiny-v0: TrainConfig.tiny + MABPConfig.tiny, batch 8, seed 0
  python tools/learning_curve.py --resume             # continue runs/curve
  python tools/learning_curve.py --max_steps 20 --eval_every 5 --stop_at 10 --dev_max_items 16 \\
      --out runs/curve_smoke --csv runs/curve_smoke/curve.csv     # smoke test
"""
import argparse, csv, hashlib, json, os, subprocess, sys, time
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
from torch.utils.data import Subset

from mabp.checkpoint import load_checkpoint, load_model, seed_all
from mabp.data import RefDataset, load_tokenizer
from mabp.evaluate import evaluate_model
from mabp.model import MABP, MABPConfig
from mabp.synthetic import carve_dev, make_synthetic_gres
from mabp.timing import repo_root
from mabp.train import TrainConfig, parse_overrides, read_log, train

FIELDS = ['recipe', 'commit', 'overrides', 'step', 'samples_seen', 'train_s', 'wall_s', 'gIoU', 'cIoU', 'N-acc', 'T-acc',
          'Pr@0.7', 'Pr@0.8', 'Pr@0.9', 'loss_mean', 'loss_mask_mean', 'loss_nt_mean', 'lr', 'n_dev', 'n_dev_no_target',
          'eval_s', 'step_s_mean', 'loadavg1', 'time_utc', 'config_sha']


def git_commit(root: Path) -> str:
    "Short HEAD commit of `root`, with '+dirty' when mabp/ or this script differ from it."
    try:
        c = subprocess.run(['git', '-C', str(root), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, check=True).stdout.strip()
        d = subprocess.run(['git', '-C', str(root), 'status', '--porcelain', '--', 'mabp', 'tools/learning_curve.py'],
                           capture_output=True, text=True).stdout.strip()
        return c + ('+dirty' if d else '')
    except Exception: return '?'


def read_rows(path: Path, recipe: str) -> list:
    if not path.exists(): return []
    with open(path, newline='') as f: return [r for r in csv.DictReader(f) if r.get('recipe') == recipe]


def append_row(path: Path, row: dict):
    "Append one row; a file written with an older column list is first rewritten under `FIELDS` (its rows kept, by name)."
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    if not new:
        with open(path, newline='') as f: header = next(csv.reader(f))
        if header != FIELDS:
            if set(header) - set(FIELDS): raise SystemExit(f'{path}: unknown columns {sorted(set(header) - set(FIELDS))}')
            with open(path, newline='') as f: old = list(csv.DictReader(f))
            tmp = path.with_suffix('.tmp')
            with open(tmp, 'w', newline='') as f:
                w = csv.DictWriter(f, FIELDS); w.writeheader()
                for r in old: w.writerow({k: r.get(k, '') for k in FIELDS})
            os.replace(tmp, path)
    with open(path, 'a', newline='') as f:
        w = csv.DictWriter(f, FIELDS)
        if new: w.writeheader()
        w.writerow({k: row.get(k, '') for k in FIELDS})
        f.flush(); os.fsync(f.fileno())


def interval_stats(log_rows: list, lo: int, hi: int) -> dict:
    "Means of the training log over steps (lo, hi] and the cumulative step time up to hi."
    seg = [r for r in log_rows if lo < r['step'] <= hi and not r.get('skipped')]
    mean = lambda k: round(sum(r[k] for r in seg) / len(seg), 6) if seg and k in seg[0] else ''
    tot = sum(r['step_time'] for r in log_rows if r['step'] <= hi)
    return dict(loss_mean=mean('loss'), loss_mask_mean=mean('loss_mask'), loss_nt_mean=mean('loss_nt'),
                step_s_mean=mean('step_time'), train_s=round(tot, 2),
                lr=next((r['lr'] for r in log_rows if r['step'] == hi), ''))


def profile_steps(cfg: TrainConfig, n: int, path: Path, command: str, warmup: int = 2, top: int = 15):
    "Profile `n` training steps of `cfg`'s recipe (as `train` builds them: data, model, loss, fused AdamW, clipping) after `warmup`."
    from torch.profiler import ProfilerActivity, profile
    from mabp.bench import recipe_step
    step = recipe_step(cfg, 'cpu')[0]        # the same step as `train`'s (train_step: clipping, non-finite guard)
    for _ in range(warmup): step()
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n): step()
    wall = time.perf_counter() - t
    tab = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=top)
    head = (f'# Top {top} operators by self CPU time over {n} training steps of the tiny recipe (after {warmup} warm-up steps)\n'
            f'# command: {command}\n# torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {cfg.batch_size}, '
            f'{cfg.model.image_size} px; profiled wall {wall:.2f} s = {wall / n:.3f} s/step (profiler overhead included); '
            f'load average {os.getloadavg()[0]:.2f}; {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}\n'
            f'# one step = data loading + forward + loss + backward + clip_grad_norm_ + fused AdamW step\n\n')
    path.parent.mkdir(parents=True, exist_ok=True); path.write_text(head + tab + '\n')
    print(head + tab, flush=True)


def time_recipes(cfgs: dict, rounds: int, path: Path, command: str, warmup: int = 2, overrides: dict = None):
    """Seconds per training step of each recipe in `cfgs` (name -> TrainConfig), timed in ONE process, interleaved (one
    step of each per round, `mabp.timing.time_interleaved`), each on its own real data stream: ratios to the first recipe
    survive a busy machine, absolute times do not. A cached text encoder starts empty, as in a run."""
    from mabp.bench import recipe_step
    from mabp.timing import time_interleaved
    fns = {name: recipe_step(cfg, 'cpu')[0] for name, cfg in cfgs.items()}
    res = time_interleaved(fns, repeats=rounds, warmup=warmup)
    base = next(iter(res))
    out = dict(command=command, torch=str(torch.__version__), threads=torch.get_num_threads(), rounds=rounds, warmup=warmup,
               time_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), baseline=base,
               recipes={k: dict(median_s=round(v['median_ms'] / 1e3, 4), min_s=round(v['min_ms'] / 1e3, 4),
                                ratio_median=round(v['median_ms'] / res[base]['median_ms'], 4),
                                ratio_min=round(v['min_ms'] / res[base]['min_ms'], 4), load=v['load'],
                                batch_size=cfgs[k].batch_size, overrides=(overrides or {}).get(k, ''),
                                s_per_sample=round(v['median_ms'] / 1e3 / cfgs[k].batch_size, 5))
                        for k, v in res.items()})
    path.parent.mkdir(parents=True, exist_ok=True); path.write_text(json.dumps(out, indent=1) + '\n')
    print(json.dumps(out, indent=1), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--recipe', default='tiny-v0', help='name written in every row (the recipe below)')
    ap.add_argument('--data', default=None, help='synthetic root (default <repo>/data/synthetic; generated if missing)')
    ap.add_argument('--n_images', type=int, default=4000); ap.add_argument('--image_size', type=int, default=128)
    ap.add_argument('--data_seed', type=int, default=0)
    ap.add_argument('--dev_mod', type=int, default=42, help='an image is in the dev slice when its hash %% dev_mod == 0')
    ap.add_argument('--dev_max_items', type=int, default=None, help='first N dev items only (smoke tests; not a result)')
    ap.add_argument('--out', default='runs/curve'); ap.add_argument('--csv', default='nbs/results/learning_curve.csv')
    ap.add_argument('--max_steps', type=int, default=6000, help='schedule horizon (cosine to this step)')
    ap.add_argument('--eval_every', type=int, default=150); ap.add_argument('--stop_at', type=int, default=None,
                    help='leave after this step (default max_steps); the schedule still follows max_steps')
    ap.add_argument('--batch_size', type=int, default=8); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--eval_batch_size', type=int, default=16)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--resume', action='store_true', help='continue OUT/last.pt and the CSV rows of this recipe')
    ap.add_argument('--profile', type=int, default=0, help='only profile this many training steps (torch.profiler) into --profile_out')
    ap.add_argument('--profile_out', default='nbs/results/profile_tiny_step.txt')
    ap.add_argument('--no_step0', action='store_true', help='skip the evaluation of the initial weights')
    ap.add_argument('--time', nargs='*', default=None, metavar='NAME=OVERRIDES',
                    help="only time training steps, interleaved: the --set recipe against each NAME='k=v k=v' (first = --recipe)")
    ap.add_argument('--time_rounds', type=int, default=20)
    ap.add_argument('--time_out', default='nbs/results/learning_curve_steptime.json')
    ap.add_argument('--derived', default=None, help='where the derived root goes (default <data>_curve next to --data)')
    ap.add_argument('--set', nargs='*', default=[], help='recipe overrides key=value of TrainConfig, model.key=value of '
                    'MABPConfig (applied to TrainConfig.tiny / MABPConfig.tiny; written in every row)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    repo = repo_root()
    out, csv_path = Path(a.out), Path(a.csv)
    src = Path(a.data or repo / 'data' / 'synthetic')
    if not (src / 'grefcoco' / 'grefs(unc).json').exists():      # generated once; an existing set is only read
        make_synthetic_gres(src, a.n_images, a.image_size, a.data_seed, progress=False)
    src = src.resolve()
    root = Path(a.derived) if a.derived else src.parent / f'{src.name}_curve'
    dev_info = carve_dev(src, root, a.dev_mod)

    tkw, mkw = parse_overrides(a.set)
    mcfg = MABPConfig.tiny(image_size=a.image_size, **mkw)
    cfg = TrainConfig.tiny(**{**dict(root=str(root), model=mcfg, max_steps=a.max_steps, batch_size=a.batch_size, seed=a.seed,
                                     out_dir=str(out), device='cpu', progress=False, eval_splits=(), resume='auto'), **tkw})
    overrides = ' '.join(a.set)
    if a.time is not None:
        cfgs, ovs = {a.recipe: cfg}, {a.recipe: overrides}
        for spec in a.time:
            name, _, ov = spec.partition('=')
            tk, mk = parse_overrides(ov.split())
            c = TrainConfig.tiny(**{**dict(root=str(root), model=MABPConfig.tiny(image_size=a.image_size, **mk),
                                           max_steps=a.max_steps, batch_size=a.batch_size, seed=a.seed, out_dir=str(out),
                                           device='cpu', progress=False, eval_splits=()), **tk})
            cfgs[name], ovs[name] = c, ov
        return time_recipes(cfgs, a.time_rounds, Path(a.time_out), ' '.join(['python', *sys.argv]), overrides=ovs)
    if a.profile:
        return profile_steps(cfg, a.profile, Path(a.profile_out), ' '.join(['python', *sys.argv]))
    rcfg = cfg.resolved().to_dict()
    key = {k: v for k, v in rcfg.items() if k not in ('resume', 'stop_at_step', 'progress', 'out_dir', 'root')}
    key['dev_refs_sha1'] = dev_info['refs_sha1']                     # the data (train minus dev), not where it lies
    config_sha = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]

    rows = read_rows(csv_path, a.recipe)
    ck_step = load_checkpoint(out / 'last.pt')['step'] if (out / 'last.pt').exists() else 0
    if not a.resume and (rows or ck_step):
        sys.exit(f'learning_curve: error: {out}/last.pt or rows of recipe {a.recipe!r} in {csv_path} exist. '
                 'Fix: pass --resume to continue, or use another --out / --csv / --recipe.')
    if rows and rows[-1]['config_sha'] != config_sha:
        sys.exit(f'learning_curve: error: {csv_path} rows of {a.recipe!r} come from another config ({rows[-1]["config_sha"]} '
                 f'vs {config_sha}). Fix: use the same arguments, or another --recipe.')
    done = {int(r['step']) for r in rows}
    wall0 = float(rows[-1]['wall_s']) if rows else 0.0
    commit = git_commit(repo)
    meta_path = csv_path.with_suffix('.json')
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    runs = meta.get(a.recipe, {}).get('invocations', []) if a.resume else []
    runs.append(dict(command=' '.join(['python', *sys.argv]), commit=commit, from_step=ck_step,
                     time_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())))
    meta[a.recipe] = dict(invocations=runs, overrides=overrides, commit_at_start=runs[0]['commit'],
                          config_sha=config_sha, resolved_config=rcfg, horizon_steps=a.max_steps, eval_every=a.eval_every,
                          schedule=f"{rcfg['schedule']} over max_steps={a.max_steps}, warm-up {rcfg['warmup_steps']}, "
                                   f"lr {rcfg['lr']} -> {rcfg['min_lr']}",
                          threads=a.threads, dev_slice={k: v for k, v in dev_info.items()},
                          dev_max_items=a.dev_max_items, data=dict(root=str(src), n_images=a.n_images,
                                                                 image_size=a.image_size, seed=a.data_seed),
                          columns=dict(train_s='sum of the per-step times in the training log (data loading included; '
                                                  'model building, checkpoint I/O and evaluation excluded)',
                                       wall_s='cumulative wall seconds of the training segments (train() calls: setup, '
                                              'resume, steps, checkpoint save), evaluation excluded',
                                       loss_mean='mean training loss over the steps since the previous row',
                                       loadavg1='1-minute load average at evaluation (the machine is shared)'))
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=1))

    tok = load_tokenizer(mcfg.text_model)
    dev_full = RefDataset(src, 'grefcoco', 'train', image_size=mcfg.image_size, max_tokens=mcfg.max_tokens, tokenizer=tok)
    dset = set(dev_info['dev_image_ids'])
    idx = [i for i, (ri, _) in enumerate(dev_full.items) if dev_full.refs[ri]['image_id'] in dset]
    if a.dev_max_items: idx = idx[:a.dev_max_items]
    dev = Subset(dev_full, idx)
    n_nt = sum(1 for i in idx if dev_full.refs[dev_full.items[i][0]].get('no_target'))
    print(f'[curve] {a.recipe}: dev slice {len(idx)} sentences ({n_nt} no-target) on {dev_info["n_dev_images"]} images; '
          f'training on {dev_info["n_train_images"]} images / {dev_info["n_train_refs"]} refs; horizon {a.max_steps} steps; '
          f'resume from step {ck_step}; commit {commit}', flush=True)

    def evaluate_row(model, step, wall):
        t = time.time()
        m = evaluate_model(model, dev, batch_size=a.eval_batch_size, progress=False, desc='dev')
        log_rows = read_log(out / 'log.csv') if (out / 'log.csv').exists() else []
        prev = max([s for s in done if s < step], default=0)
        st = interval_stats(log_rows, prev, step) if step else dict(train_s=0.0)
        row = dict(recipe=a.recipe, commit=commit, overrides=overrides, step=step, samples_seen=step * cfg.batch_size, wall_s=round(wall, 2),
                   **{k: round(float(m[k]), 4) for k in ('gIoU', 'cIoU', 'N-acc', 'T-acc', 'Pr@0.7', 'Pr@0.8', 'Pr@0.9')},
                   **st, n_dev=int(m['n_samples']), n_dev_no_target=int(m.get('n_no_target', n_nt)),
                   eval_s=round(time.time() - t, 2), loadavg1=round(os.getloadavg()[0], 2),
                   time_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), config_sha=config_sha)
        append_row(csv_path, row); done.add(step)
        print(f"[curve] step {step:5d} train {row['train_s']:8.1f}s  loss {row.get('loss_mean', '')!s:>9}  gIoU {row['gIoU']:6.2f} "
              f"cIoU {row['cIoU']:6.2f} N-acc {row['N-acc']:6.2f} T-acc {row['T-acc']:6.2f}  (eval {row['eval_s']:.0f}s, "
              f"load {row['loadavg1']})", flush=True)

    if 0 not in done and ck_step == 0 and not a.no_step0:       # the initial weights, built as train() builds them
        seed_all(a.seed); evaluate_row(MABP(mcfg), 0, 0.0)
    if ck_step and ck_step not in done and ck_step % a.eval_every == 0:   # killed between a save and its evaluation
        evaluate_row(load_model(out / 'last.pt')[0], ck_step, wall0)
    stop_at = min(a.stop_at or a.max_steps, a.max_steps)
    step, wall = ck_step, wall0
    while step < stop_at:
        nxt = min((step // a.eval_every + 1) * a.eval_every, stop_at)
        t = time.time()
        res = train(cfg.replace(stop_at_step=nxt if nxt < a.max_steps else None))
        wall += time.time() - t
        step = res['step']
        if step != nxt: sys.exit(f'learning_curve: error: training stopped at step {step}, not {nxt} ({res["stopped"]})')
        evaluate_row(load_model(out / 'last.pt')[0], step, wall)
    print(f'[curve] done at step {step}', flush=True)


if __name__ == '__main__':
    main()
