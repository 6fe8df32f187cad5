"""The command line: ``fastopt bench`` (and ``fastopt train``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

import numpy as np


def _sizes(text: str) -> List[int]:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    out = []
    for part in text.split(","):
        part = part.strip().upper()
        if not part:
            continue
        try:
            out.append(int(float(part[:-1]) * units[part[-1]]) if part[-1] in units else int(part))
        except (ValueError, KeyError):
            raise argparse.ArgumentTypeError(f"bad size {part!r}: use numbers like 1024, 64K, 4M") from None
    return out


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
        return tqdm(total=total, disable=not enabled, file=sys.stderr, leave=False)
    except ImportError:
        class _Plain:
            def __init__(self):
                self.n = 0

            def update(self, k=1):
                self.n += k
                if enabled:
                    print(f"\r{self.n}/{total}", end="", file=sys.stderr, flush=True)

            def set_description(self, _):
                pass

            def close(self):
                if enabled:
                    print(file=sys.stderr)
        return _Plain()


def _fmt_size(n: int) -> str:
    for unit, k in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k}{unit}"
    return str(n)


def train_bench_main(args: argparse.Namespace) -> int:
    from . import trainbench as T
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in T.CASES:
            raise SystemExit(f"fastopt bench: unknown case {c!r}; choose from {', '.join(T.CASES)}")
    args.rounds = args.rounds or 3
    peers = [(p, p, {}) for p in T.PEERS if p == "fastopt" or _importable(p)]
    settings = [False, True] if args.busy else [False]
    bar = _progress(len(settings) * args.rounds * len(cases) * len(peers), not args.no_progress)
    rows = []
    for busy in settings:
        rows += T.compare(cases, peers, rounds=args.rounds, busy=busy, smoke=args.quick, progress=bar.update)
    bar.close()
    print(format_train_table(rows))
    _save_json(args.json, "train", rows)
    return 0


def _save_json(path, key: str, rows) -> None:
    """With --json: the machine's configuration and the rows, under ``key``."""
    if path:
        with open(path, "w") as f:
            json.dump({"config": _config(), key: rows}, f, indent=1)
        print(f"results saved to {path}")


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def format_train_table(rows) -> str:
    """Seconds per fit and per epoch (medians), held-out accuracy (the mean over the rounds' seeds),
    and fastopt's speed-up over each peer."""
    lines = [f"{'case':7} {'machine':8} {'peer':9} {'seconds':>8} {'s/epoch':>8} {'range':>13} {'accuracy':>8} "
             f"{'fastopt x':>9}"]
    ours = {(r["case"], r["busy"]): r["seconds"] for r in rows if r["peer"] == "fastopt"}
    for r in rows:
        speed = f"{r['seconds'] / ours[(r['case'], r['busy'])]:9.2f}" if r["peer"] != "fastopt" else f"{'':9}"
        lines.append(f"{r['case']:7} {'busy' if r['busy'] else 'quiet':8} {r['peer']:9} {r['seconds']:8.2f} "
                     f"{r['seconds_per_epoch']:8.3f} {r['min']:6.2f}-{r['max']:<6.2f} {r['accuracy']:8.4f} {speed}")
    lines.append("(seconds: medians of the rounds; accuracy: the mean over the rounds, round k trained with seed k)")
    return "\n".join(lines)


def lean_bench_main(args: argparse.Namespace) -> int:
    from . import leanbench as L
    if not _importable("ml_dtypes"):
        raise SystemExit("fastopt bench --lean: bfloat16 arrays need ml-dtypes (pip install ml-dtypes, or fastopt[lean])")
    n = args.elements if args.elements else (1 << 20 if args.quick else 64 * 2**20)
    rows = L.run(n, rounds=3 if args.quick else args.rounds or 3)
    print(format_lean_table(rows))
    _save_json(args.json, "lean", rows)
    return 0


def format_lean_table(rows) -> str:
    """ms per Adam step, bytes moved and kept, GB/s, the speed-up over torch's fused Adam on the
    same model dtype and the fraction of the probe moving the same bytes."""
    w = max([44] + [len(r["peer"]) for r in rows])
    lines = [f"{'peer':{w}} {'ms':>8} {'B/elem':>6} {'state B':>7} {'GB/s':>6} {'vs torch':>8} {'of probe':>8}"]
    for r in rows:
        vs = f"{r['vs_torch_fused']:7.2f}x" if r["vs_torch_fused"] else f"{'':8}"
        frac = f"{r['of_probe']:8.0%}" if r["of_probe"] else f"{'':8}"
        lines.append(f"{r['peer']:{w}} {r['ms']:8.2f} {r['bytes_per_element']:6.1f} {r['state_bytes_per_param']:7.2f} "
                     f"{r['GB/s']:6.1f} {vs} {frac}")
    n = rows[0]["elements"] if rows else 0
    lines.append(f"({n:,} elements, Adam; medians of interleaved rounds; torch-fused (A/A) times torch twice)")
    return "\n".join(lines)


def bench_main(args: argparse.Namespace) -> int:
    if args.train:
        return train_bench_main(args)
    if args.lean:
        return lean_bench_main(args)
    from . import _core
    from . import benchmarks as B

    rules = [r.strip() for r in args.rules.split(",")]
    for r in rules:
        if r not in B.RULES:
            raise SystemExit(f"fastopt bench: unknown rule {r!r}; choose from {', '.join(B.RULES)}")
    peers = [p.strip() for p in args.peers.split(",")]
    for p in peers:
        if p not in B.PEERS:
            raise SystemExit(f"fastopt bench: unknown peer {p!r}; choose from {', '.join(B.PEERS)}")
    if "probe" not in peers:
        peers.insert(0, "probe")
    sizes = [[n] for n in args.sizes]
    labels = {}
    for name in ([args.network] if args.network else []) + (["resnet50"] if args.resnet50 else []):
        if name not in B.NETWORKS:
            raise SystemExit(f"fastopt bench: unknown network {name!r}; choose from {', '.join(B.NETWORKS)}")
        sizes.append(B.NETWORKS[name]())
        labels[len(sizes) - 1] = name
    all_threads = _core.get_num_threads()
    threads = sorted({all_threads if t == "all" else int(t) for t in args.threads.split(",")})
    dtypes = [np.dtype(d).type for d in args.dtype.split(",")]
    cases = [(r, d, k, t) for r in rules for d in dtypes for k in range(len(sizes)) for t in threads]
    rounds = args.rounds or (3 if args.quick else 7)
    bar = _progress(len(cases), not args.no_progress)
    results = []
    for rule, dtype, k, nt in cases:
        B.set_threads(nt)
        size_list = sizes[k]
        label = labels.get(k) or _fmt_size(size_list[0])
        row = {"rule": rule, "dtype": np.dtype(dtype).name, "size": label, "elements": int(sum(size_list)),
               "arrays": len(size_list), "threads": nt, "rounds": rounds, "peers": {}}
        bar.set_description(f"{rule} {row['dtype']} {label} {nt}t")
        # every peer on the same parameters and gradients (the state is each one's own, except the
        # probe's and NumPy's, which are fastopt's), interleaved round by round; fastopt twice, an
        # A/A control of the machine's noise
        pr = B.Problem.make(rule, dtype, size_list, staggered_params=args.placement == "staggered")
        fns = {}
        for peer in peers:
            fn = B.make_peer(pr, peer)
            if fn is not None:
                fns[peer] = fn
                if peer == "fastopt":
                    fns[AA] = B.make_peer(pr, peer)
        row["placement"] = B.placement(pr, fns)  # bytes modulo 4 KiB: what 4K aliasing depends on
        row["placement"]["params and grads"] = args.placement
        for peer, t in B.time_interleaved(fns, rounds=rounds, min_time=args.min_time).items():
            row["peers"][peer] = {"best_s": t.best, "median_s": t.median, "spread": t.spread, "reps": t.reps,
                                  "GBps": pr.bytes / t.best / 1e9}
        del pr, fns
        bar.update()
        results.append(row)
    bar.close()
    B.set_threads(all_threads)
    print(format_table(results))
    _save_json(args.json, "results", results)
    if args.plot:
        plot_results(results, args.plot)
        print(f"plot saved to {args.plot}")
    return 0


def _config():
    from ._config import config
    return config()


#: the name of fastopt's second timing in a case's table (an A/A control)
AA = "fastopt (A/A)"
#: a measurement is flagged when its samples spread more than this ((p90 - p10) / median; over the rounds) ...
NOISY_SPREAD = 0.5
#: ... or when it beats the bandwidth probe by more than this factor (the probe was slowed)
NOISY_PROBE = 1.3


def format_table(results) -> str:
    """time, GB/s (from the best time), fraction of the probe's bandwidth and fastopt's speed-up
    over each peer (from the medians of the interleaved rounds); rows too noisy to trust end in
    "noisy" and a warning follows the table."""
    lines = [f"{'rule':8} {'dtype':7} {'size':>8} {'thr':>3} {'peer':14} {'best':>10} {'median':>10} {'spread':>6} "
             f"{'GB/s':>7} {'of probe':>8} {'fastopt x':>9}"]
    flagged = 0
    for row in results:
        peers = row["peers"]
        probe = peers.get("probe", {}).get("median_s")
        ours = peers.get("fastopt", {}).get("median_s")
        for name, r in peers.items():
            frac = f"{probe / r['median_s']:8.0%}" if probe else f"{'':8}"
            speed = f"{r['median_s'] / ours:9.2f}" if ours and name not in ("fastopt", "probe") else f"{'':9}"
            noisy = r["spread"] > NOISY_SPREAD or (probe and name != "probe" and r["median_s"] * NOISY_PROBE < probe)
            flagged += bool(noisy)
            lines.append(f"{row['rule']:8} {row['dtype']:7} {row['size']:>8} {row['threads']:>3} {name:14} "
                         f"{_fmt_time(r['best_s']):>10} {_fmt_time(r['median_s']):>10} {r['spread']:6.0%} "
                         f"{r['GBps']:7.1f} {frac} {speed}" + ("  noisy" if noisy else ""))
    if flagged:
        lines.append(f"warning: {flagged} measurement(s) marked noisy (samples spread over {NOISY_SPREAD:.0%}, or "
                     f"faster than {NOISY_PROBE}x the bandwidth probe): the machine was busy; rerun them")
    return "\n".join(lines)


def _fmt_time(s: float) -> str:
    for unit, k in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= k:
            return f"{s / k:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def plot_results(results, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("fastopt bench --plot needs matplotlib: pip install 'fastopt[train]'") from None
    import itertools
    # a colour, a line style and a marker each: 10 x 4 x 6 lines told apart
    styles = itertools.cycle([(c, ls, m) for ls, m in zip(["-", "--", "-.", ":"], "osD^") for c in
                              plt.rcParams["axes.prop_cycle"].by_key()["color"]])
    series = {}
    for row in results:
        if row["arrays"] != 1:
            continue
        for peer, r in row["peers"].items():
            key = f"{row['rule']} {row['dtype']} {row['threads']}t {peer}"
            series.setdefault(key, []).append((row["elements"], r["GBps"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for (key, pts), (color, line, marker) in zip(sorted(series.items()), styles):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, linestyle=line, marker=marker, label=key)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("elements")
    ax.set_ylabel("GB/s (bytes the update must move / best time)")
    ax.set_title("fastopt bench")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _digits(args: argparse.Namespace, command: str):
    from .datasets import load_digits, stratified_split
    try:
        X, y = load_digits()
    except ImportError as e:
        raise SystemExit(f"fastopt {command}: {e}") from None
    X = X / 16.0
    train, test = stratified_split(y, args.test_size, args.seed)
    return X[train], X[test], y[train], y[test]


def _settings(args: argparse.Namespace):
    """The recipe's settings from the training flags."""
    opt_kwargs = dict(args.opt)
    for name in ("momentum", "betas", "eps"):
        if getattr(args, name) is not None:
            opt_kwargs[name] = getattr(args, name)
    if args.nesterov:
        opt_kwargs["nesterov"] = True
    return dict(hidden_layer_sizes=args.hidden, activation=args.activation, dropout=args.dropout,
                optimizer=args.optimizer, lr=args.lr, schedule=args.schedule, warmup=args.warmup,
                epochs=args.epochs, batch_size=args.batch_size, l1=args.l1, l2=args.l2,
                weight_decay=args.weight_decay, clipnorm=args.clipnorm, clipvalue=args.clipvalue,
                global_clipnorm=args.global_clipnorm, patience=args.patience if args.val_split > 0 else 0,
                validation_split=args.val_split, dtype=args.dtype, state_dtype=args.state_dtype,
                optimizer_kwargs=opt_kwargs or None,
                loss=args.loss, loss_kwargs=_loss_kwargs(args))


#: what ``fastopt compare --vary`` varies: flag name -> (setting, value type)
VARY = {"lr": ("lr", float), "batch-size": ("batch_size", int), "optimizer": ("optimizer", str),
        "schedule": ("schedule", str), "epochs": ("epochs", int), "dropout": ("dropout", float),
        "l1": ("l1", float), "l2": ("l2", float), "weight-decay": ("weight_decay", float),
        "warmup": ("warmup", int), "activation": ("activation", str), "hidden": ("hidden_layer_sizes", "hidden")}


def _vary(text: str):
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or name not in VARY:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=V1,V2,... with NAME one of {', '.join(VARY)}")
    setting, kind = VARY[name]
    parts = [v.strip() for v in values.split("|" if kind == "hidden" else ",") if v.strip()]
    try:
        vals = [_hidden(v) if kind == "hidden" else kind(v) for v in parts]
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{text!r}: bad values for {name}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one value")
    return setting, vals


def compare_main(args: argparse.Namespace) -> int:
    from .experiments import compare
    X_train, X_test, y_train, y_test = _digits(args, "compare")
    vary = dict(args.vary)
    fixed = {k: v for k, v in _settings(args).items() if k not in vary}
    try:
        result = compare(X_train, y_train, vary, X_test=X_test, y_test=y_test, seed=args.seed, **fixed)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"fastopt compare: {e}") from None
    print(result.table())
    best = result.best("val_loss" if fixed["validation_split"] > 0 else "loss")
    print(f"best: {best.label(result.varied)}")
    if args.plot:
        result.plot(args.plot)
        print(f"curves saved to {args.plot}")
    return 0


def lr_find_main(args: argparse.Namespace) -> int:
    from .experiments import lr_find
    X_train, _, y_train, _ = _digits(args, "lr-find")
    settings = {k: v for k, v in _settings(args).items() if k not in ("lr", "schedule", "warmup", "epochs")}
    try:
        found = lr_find(X_train, y_train, start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.steps,
                        seed=args.seed, **settings)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"fastopt lr-find: {e}") from None
    print(f"{len(found.lrs)} steps from lr {found.lrs[0]:.3g} to {found.lrs[-1]:.3g}; lowest smoothed loss "
          f"{found.smoothed.min():.4f} at lr {found.lrs[int(found.smoothed.argmin())]:.3g}")
    print(f"suggested lr: {found.suggestion:.3g}")
    if args.plot:
        found.plot(args.plot)
        print(f"plot saved to {args.plot}")
    return 0


def train_main(args: argparse.Namespace) -> int:
    from .train import recipe

    X_train, X_test, y_train, y_test = _digits(args, "train")
    hidden = args.hidden
    settings = _settings(args)
    try:
        trainer, _ = recipe.build(X_train.shape[1], 10, len(X_train), seed=args.seed, **settings)
        _check_optimizer(trainer)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"fastopt train: {e}") from None
    model = trainer.model
    print(f"digits: {len(X_train)} training / {len(X_test)} held-out images, 64 pixels, 10 classes; "
          f"MLP 64-{'-'.join(map(str, hidden))}-10 ({model.n_params} parameters, {args.dtype}); "
          f"{args.optimizer} lr={args.lr} schedule={args.schedule} batch={args.batch_size}")
    history = trainer.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                          validation_split=args.val_split, seed=args.seed, verbose=not args.no_progress)
    h = history.history
    for e in range(len(h["loss"])):
        if e % max(1, len(h["loss"]) // 10) == 0 or e == len(h["loss"]) - 1:
            val = f" val_loss {h['val_loss'][e]:.4f} val_acc {h['val_accuracy'][e]:.4f}" if "val_loss" in h else ""
            print(f"epoch {e + 1:3d} loss {h['loss'][e]:.4f} acc {h['accuracy'][e]:.4f}{val} lr {h['lr'][e]:.3g}")
    print(history.stop_reason + (f" (best epoch {history.best_epoch})" if history.best_epoch else ""))
    result = trainer.evaluate(X_test, y_test)
    print(f"held-out accuracy: {result['accuracy']:.4f} (loss {result['loss']:.4f})")
    if args.save:
        trainer.save(args.save)
        print(f"model and optimizer state saved to {args.save}")
    if args.plot:
        plot_history(history, args.plot)
        print(f"training curves saved to {args.plot}")
    return 0


def _loss_kwargs(args: argparse.Namespace):
    if args.loss == "focal":
        if args.label_smoothing:
            raise SystemExit("fastopt train: --label-smoothing is an option of softmax_cross_entropy, not of focal")
        return {"gamma": args.focal_gamma}
    return {"label_smoothing": args.label_smoothing} if args.label_smoothing else None


def _check_optimizer(trainer) -> None:
    """One step on zero gradients of a copy: the kernel's own checks (weight_decay, betas, ...)
    fail here, before the progress bar, instead of at the first step."""
    import copy
    opt = copy.deepcopy(trainer.optimizer)
    params = [np.array(p) for g in opt.param_groups for p in g["params"]]
    k = 0
    for g in opt.param_groups:
        n = len(g["params"])
        g["params"] = params[k:k + n]
        k += n
    opt.state = [opt._new_state(g) for g in opt.param_groups]
    opt.step([np.zeros_like(p) for p in params])


def plot_history(history, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'fastopt[train]'") from None
    h = history.history
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    epochs = range(1, len(h["loss"]) + 1)
    for ax, keys, title in ((axes[0], ("loss", "val_loss"), "loss"), (axes[1], ("accuracy", "val_accuracy"), "accuracy"),
                            (axes[2], ("lr",), "learning rate")):
        for k in keys:
            if k in h:
                ax.plot(epochs, h[k], label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a number of ``kind`` within the bounds, else a one-line error."""
    def parse(text: str):
        try:
            x = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if x != x or (low is not None and (x <= low if low_open else x < low)) or \
                (high is not None and (x >= high if high_open else x > high)):
            lo = "" if low is None else ("(" if low_open else "[") + str(low)
            hi = "" if high is None else str(high) + (")" if high_open else "]")
            raise argparse.ArgumentTypeError(f"{text} is outside {lo or '(-inf'}, {hi or 'inf)'}")
        return x
    return parse


def _hidden(text: str):
    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give layer sizes as integers, e.g. 128,64") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: every layer needs at least 1 unit")
    return sizes


def _betas(text: str):
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give two numbers, e.g. 0.9,0.999") from None
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: each beta must be in [0, 1)")
    return (b1, b2)


def _option(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: write key=value, e.g. momentum=0.9")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), tuple(parsed) if isinstance(parsed, list) else parsed


IMAGE_TYPES = ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _output(kind: str):
    """An output file whose folder exists (and, for a plot, of a type matplotlib writes)."""
    def parse(path: str):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise argparse.ArgumentTypeError(f"{path}: the folder {folder} does not exist")
        if kind == "plot" and path.rsplit(".", 1)[-1].lower() not in IMAGE_TYPES:
            raise argparse.ArgumentTypeError(f"{path}: the plot is written as {', '.join(IMAGE_TYPES)} (by its ending)")
        return path
    return parse


def _threads_list(text: str) -> str:
    for t in text.split(","):
        t = t.strip()
        if t != "all" and not (t.isdigit() and 1 <= int(t) <= 1024):
            raise argparse.ArgumentTypeError(f"{t!r}: thread counts are integers from 1 to 1024, or all")
    return text


def _dtypes(text: str) -> str:
    for d in text.split(","):
        if d.strip() not in ("float32", "float64"):
            raise argparse.ArgumentTypeError(f"{d.strip()!r}: the kernels take float32 or float64")
    return text


def _training_flags(t: argparse.ArgumentParser) -> None:
    """The flags of a digits training run, shared by train, compare and lr-find."""
    t.add_argument("--optimizer", default="adam", help="sgd, adam, adamw, adagrad, rmsprop, adadelta, adamax, "
                   "nadam, radam, lion, lamb")
    t.add_argument("--lr", type=_number(float, 0.0, low_open=True), default=1e-3,
                   help="learning rate (peak rate for schedules)")
    t.add_argument("--schedule", default="constant",
                   help="constant, step, multistep, exponential, cosine, cosine_restarts, onecycle, plateau, "
                        "linear, polynomial, inverse_time, cyclic")
    t.add_argument("--warmup", type=_number(int, 0), default=0, help="linear warm-up steps before the schedule")
    t.add_argument("--epochs", type=_number(int, 1), default=30, help="passes over the training set")
    t.add_argument("--batch-size", type=_number(int, 1), default=32, help="rows per step")
    t.add_argument("--hidden", type=_hidden, default="64", help="hidden layer sizes, e.g. 128,64")
    t.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "identity"],
                   help="of the hidden layers")
    t.add_argument("--dropout", type=_number(float, 0.0, 1.0, high_open=True), default=0.0,
                   help="inverted dropout after each hidden layer")
    t.add_argument("--l1", type=_number(float, 0.0), default=0.0, help="L1 penalty (fused into the update)")
    t.add_argument("--l2", type=_number(float, 0.0), default=0.0, help="L2 penalty (fused into the update)")
    t.add_argument("--weight-decay", type=_number(float, 0.0), default=None,
                   help="the optimizer's own weight_decay (default: the optimizer's)")
    t.add_argument("--momentum", type=_number(float, 0.0), default=None, help="sgd / rmsprop momentum")
    t.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum (needs --momentum)")
    t.add_argument("--betas", type=_betas, default=None, help="the Adam family's and Lion's betas, e.g. 0.9,0.999")
    t.add_argument("--eps", type=_number(float, 0.0, low_open=True), default=None, help="the optimizer's epsilon")
    t.add_argument("--opt", type=_option, action="append", default=[], metavar="KEY=VALUE",
                   help="any other optimizer hyperparameter, e.g. --opt amsgrad=true (repeatable)")
    t.add_argument("--loss", default="softmax_cross_entropy", choices=["softmax_cross_entropy", "focal"],
                   help="the training loss")
    t.add_argument("--label-smoothing", type=_number(float, 0.0, 1.0), default=0.0,
                   help="softmax cross-entropy's targets: (1 - s) onehot + s / k")
    t.add_argument("--focal-gamma", type=_number(float, 0.0), default=2.0, help="focal loss's gamma")
    t.add_argument("--clipnorm", type=_number(float, 0.0, low_open=True), default=None,
                   help="clip each array's gradient norm")
    t.add_argument("--state-dtype", choices=("float32", "bfloat16", "int8"), default="float32",
                   help="the optimizer's state: float32, bfloat16 (half the bytes) or int8 (8-bit blockwise)")
    t.add_argument("--global-clipnorm", type=_number(float, 0.0, low_open=True), default=None,
                   help="clip the global gradient norm (fused)")
    t.add_argument("--clipvalue", type=_number(float, 0.0, low_open=True), default=None, help="clamp gradients (fused)")
    t.add_argument("--patience", type=_number(int, 0), default=5, help="early-stopping patience on val_loss (0: off)")
    t.add_argument("--val-split", type=_number(float, 0.0, 1.0, high_open=True), default=0.1,
                   help="share of the training set for validation")
    t.add_argument("--test-size", type=_number(float, 0.0, 1.0, low_open=True, high_open=True), default=0.25,
                   help="share of the data held out for the test")
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="of the model")
    t.add_argument("--seed", type=int, default=0, help="init, split and shuffle")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from ._config import __version__
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="fastopt", description="Fast optimizer steps on the CPU.", formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"fastopt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="time update rules against NumPy, torch and the bandwidth probe", formatter_class=fmt)
    b.add_argument("--rules", default="adam", help="comma-separated rules, e.g. adam,sgd,lamb")
    b.add_argument("--dtype", type=_dtypes, default="float32", help="float32, float64 or both comma-separated")
    b.add_argument("--sizes", type=_sizes, default="1K,64K,1M,16M", help="elements, e.g. 1K,1M,64M")
    b.add_argument("--resnet50", action="store_true", help="also ResNet-50's 161 parameter arrays in one call")
    b.add_argument("--network", help="also a real network's parameter list in one call: resnet50 or gpt2-small")
    b.add_argument("--threads", type=_threads_list, default="1,all", help="thread counts, e.g. 1,all")
    b.add_argument("--peers", default=",".join(["fastopt", "numpy", "numpy-inplace", "torch-foreach", "torch-fused",
                                                "fastopt.torch"]),
                   help="peers to time; the probe always runs")
    b.add_argument("--min-time", type=_number(float, 0.0, low_open=True), default=0.3,
                   help="seconds of timing per measurement")
    b.add_argument("--placement", choices=("numpy", "staggered"), default="numpy",
                   help="the rules' table's parameters and gradients: in NumPy's new arrays, where its allocator "
                        "puts them (as a user's own arrays), or placed as fastopt's MLP places its own "
                        "(fastopt.precision.staggered); the JSON records where each array starts")
    b.add_argument("--quick", action="store_true", help="small sizes, short timing: a smoke run")
    b.add_argument("--json", metavar="FILE", type=_output("file"), help="save the results as JSON")
    b.add_argument("--plot", metavar="PNG", type=_output("plot"), help="draw GB/s against size (needs matplotlib)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--train", action="store_true",
                   help="instead: train an MLP end to end with fastopt, torch and scikit-learn (fastopt.trainbench)")
    b.add_argument("--cases", default="mnist,digits", help="with --train: mnist, digits or both")
    b.add_argument("--rounds", type=_number(int, 1), default=None,
                   help="interleaved rounds (the median): 7 for the rules' table (3 with --quick), 3 with --train "
                        "or --lean (--lean: 3 with --quick)")
    b.add_argument("--busy", action="store_true", help="with --train: also with one busy process running")
    b.add_argument("--lean", action="store_true",
                   help="instead: Adam with float32, bfloat16 and 8-bit state, float32 and bfloat16 models, against "
                        "torch fused, bitsandbytes and the same-bytes probes (fastopt.leanbench)")
    b.add_argument("--elements", type=_number(int, 1), default=None,
                   help="with --lean: parameters (default 64M; 1M with --quick)")
    b.set_defaults(func=bench_main)

    t = sub.add_parser("train", help="train an MLP on scikit-learn's handwritten digits", formatter_class=fmt)
    _training_flags(t)
    t.add_argument("--save", metavar="NPZ", type=_output("file"), help="save the model and optimizer state")
    t.add_argument("--plot", metavar="PNG", type=_output("plot"), help="save the training curves (needs matplotlib)")
    t.set_defaults(func=train_main)

    c = sub.add_parser("compare", formatter_class=fmt,
                       help="train digits once per value of --vary and compare the curves (and a table)")
    c.add_argument("--vary", action="append", type=_vary, required=True, metavar="NAME=V1,V2,...",
                   help=f"a setting and its values, e.g. lr=1e-4,1e-3,1e-2 (repeatable: every combination); "
                        f"names: {', '.join(VARY)}")
    _training_flags(c)
    c.add_argument("--plot", metavar="PNG", type=_output("plot"), help="save every run's curves on shared axes")
    c.set_defaults(func=compare_main)

    f = sub.add_parser("lr-find", formatter_class=fmt,
                       help="the learning-rate range test on digits: prints a suggested learning rate")
    _training_flags(f)
    f.add_argument("--start-lr", type=_number(float, 0.0, low_open=True), default=1e-7, help="first rate")
    f.add_argument("--end-lr", type=_number(float, 0.0, low_open=True), default=10.0, help="last rate")
    f.add_argument("--steps", type=_number(int, 10), default=200, help="minibatches (at most)")
    f.add_argument("--plot", metavar="PNG", type=_output("plot"), help="save the loss against the rate")
    f.set_defaults(func=lr_find_main)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quick", False):
        args.sizes, args.min_time = _sizes("1K,64K"), 0.05
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
