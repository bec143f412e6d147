"""The exercise checks measured on mistakes generated mechanically from each reference formula.

Every weighted-sum formula is written here as its terms, each a product of factors. The mutants
are every single change of one kind the issue lists: each factor dropped, squared or
square-rooted, each schedule index moved by one either way, each term's sign flipped, and each
pair of coefficients swapped. The other exercises get their mutants from the knobs of their
reference (the comparison and threshold of the dropout, the frequency rule of the embedding,
the target, input and reduction of the losses). Nobody picks them by hand.

For each mutant: ``caught`` (the check fails), ``named`` (the message says what is wrong: a hint
or, for the weighted sums, a sentence about each changed term) and ``misleading`` (it says a
term is wrong that the mutant did not change). Equivalent rewrites (torch.sqrt or ** 0.5,
indexing or gather, view or reshape, in place on a copy) must all be accepted.
"""
import itertools
import re
import time

import pytest
import torch
import torch.nn.functional as F

from course_utils import checks
from course_utils.checks import CheckFailed
from course_utils.core.guidance import NULL_LABEL

# A factor: (quantity, index shift, complement, power): quantity is a schedule table ("alpha_bars",
# "alphas", "betas", "posterior_variance") or an input ("scale", "variance", "one_minus_scale").
POSTERIOR = {"x0": [("alpha_bars", -1, False, 0.5), ("betas", 0, False, 1), ("alpha_bars", 0, True, -1)],
             "x_t": [("alphas", 0, False, 0.5), ("alpha_bars", -1, True, 1), ("alpha_bars", 0, True, -1)]}
LINEAR = {  # exercise: (terms {input: (sign, factors)}, the phrase the check uses for each term)
    "1.1": ({"x0": (1, [("alpha_bars", 0, False, 0.5)]), "noise": (1, [("alpha_bars", 0, True, 0.5)])},
            {"x0": "coefficient of x0", "noise": "coefficient of the noise"}),
    "2.2": ({k: (1, v) for k, v in POSTERIOR.items()}, {"x0": "coefficient of x0_hat", "x_t": "coefficient of x_t"}),
    "2.3": ({**{k: (1, v) for k, v in POSTERIOR.items()}, "z": (1, [("posterior_variance", 0, False, 0.5)])},
            {"x0": "coefficient of x0_hat", "x_t": "coefficient of x_t", "z": "coefficient of the noise z"}),
    "3.3": ({"x_t": (1, [("alphas", 0, False, -0.5)]),
             "eps": (-1, [("betas", 0, False, 1), ("alpha_bars", 0, True, -0.5), ("alphas", 0, False, -0.5)])},
            {"x_t": "coefficient of x_t", "eps": "coefficient of eps"}),
    "5.2": ({"mean": (1, []), "grad": (1, [("scale", 0, False, 1), ("variance", 0, False, 1)])},
            {"mean": "coefficient of the mean", "grad": "coefficient of grad"}),
    "6.2": ({"u": (1, [("one_minus_scale", 0, False, 1)]), "c": (1, [("scale", 0, False, 1)])},
            {"u": "coefficient of eps_uncond", "c": "coefficient of eps_cond"}),
}
SHIFTABLE = {"alpha_bars", "alphas", "betas", "posterior_variance"}


def factor_value(f, s, t, inputs, style):
    """One factor's per-sample value, computed in the given style (the styles are equivalent)."""
    name, shift, comp, p = f
    if name in SHIFTABLE:
        table = getattr(s, name)
        i = t + shift
        if name == "alpha_bars":   # index -1 is the clean end, alpha_bar = 1
            padded = torch.cat([torch.ones(1), table])
            index = (i + 1).clamp(0, len(table))
            v = padded.gather(0, index) if style == "gather" else padded[index]
        else:
            v = table[i.clamp(0, len(table) - 1)]
    else:
        v = 1 - inputs["scale"] if name == "one_minus_scale" else inputs[name]
    v = 1 - v if comp else v
    if p == 0:
        return torch.ones_like(torch.as_tensor(v, dtype=torch.float32))
    if style == "pow":
        return v ** p
    if p == 0.5:
        return torch.sqrt(torch.as_tensor(v))
    if p == -0.5:
        return 1 / torch.sqrt(torch.as_tensor(v))
    return v ** p


def weighted_sum(terms, s, t, inputs, style="index"):
    out = None
    for name, (sign, factors) in terms.items():
        x = inputs[name]
        c = torch.ones(())
        for f in factors:
            c = c * factor_value(f, s, t, inputs, style)
        c = torch.as_tensor(c, dtype=x.dtype)
        if c.dim() == 1:
            c = c.reshape(-1, *([1] * (x.dim() - 1))) if style == "pow" else c.view(-1, *([1] * (x.dim() - 1)))
        term = sign * c * x
        if out is None:
            out = term.clone() if style == "inplace" else term
        elif style == "inplace":
            out.add_(term)
        else:
            out = out + term
    return out


def as_student(exercise, terms, style="index"):
    """A student function with the exercise's signature that computes the weighted sum ``terms``."""
    if exercise == "1.1":
        return lambda x0, t, noise, s: weighted_sum(terms, s, t, {"x0": x0, "noise": noise}, style)
    if exercise == "2.2":
        return lambda x0, x_t, t, s: weighted_sum(terms, s, t, {"x0": x0, "x_t": x_t}, style)
    if exercise == "2.3":
        return lambda x_t, t, x0, s, z: weighted_sum(terms, s, torch.full((x_t.shape[0],), t),
                                                     {"x0": x0, "x_t": x_t, "z": z}, style)
    if exercise == "3.3":
        return lambda x_t, t, eps, s: weighted_sum(terms, s, t, {"x_t": x_t, "eps": eps}, style)
    if exercise == "5.2":
        return lambda mean, var, grad, scale: weighted_sum(
            terms, None, None, {"mean": mean, "grad": grad, "variance": var.flatten(), "scale": torch.tensor(scale)},
            style)
    if exercise == "6.2":
        return lambda u, c, scale: weighted_sum(terms, None, None, {"u": u, "c": c, "scale": torch.tensor(scale)},
                                                style)
    raise KeyError(exercise)


def linear_mutants(exercise):
    """(description, touched terms, student function) for every single mechanical change."""
    terms, _ = LINEAR[exercise]
    out = []
    for name, (sign, factors) in terms.items():
        out.append((f"{name}: sign flipped", {name}, {**terms, name: (-sign, factors)}))
        for k, f in enumerate(factors):
            q, shift, comp, p = f
            changes = [("dropped", (q, shift, comp, 0)), ("squared", (q, shift, comp, 2 * p)),
                       ("square-rooted", (q, shift, comp, p / 2))]
            if q in SHIFTABLE:
                changes += [("index - 1", (q, shift - 1, comp, p)), ("index + 1", (q, shift + 1, comp, p))]
            for what, g in changes:
                out.append((f"{name}: {q}{'(1-)' if comp else ''}^{p:g} {what}", {name},
                            {**terms, name: (sign, factors[:k] + [g] + factors[k + 1:])}))
    for a, b in itertools.combinations(terms, 2):
        out.append((f"coefficients of {a} and {b} swapped", {a, b},
                    {**terms, a: (terms[a][0], terms[b][1]), b: (terms[b][0], terms[a][1])}))
    return [(what, touched, as_student(exercise, t)) for what, touched, t in out]


DDIM_FACTORS = {"shift": ("ab", 0, True, 0.5), "a": ("ab", 0, True, 0.5), "b": ("ab", 0, False, 0.5),
                "c": ("abp", 0, False, 0.5), "d": ("abp", 0, True, 0.5), "s": ("scale", 0, False, 1)}


def ddim_student(*, factors=None, signs=(-1, -1, 1)):
    """DDIM (eta = 0) with eps_hat = eps + sign0 s f_shift grad, x0 = (x - f_a eps_hat) / f_b,
    x' = f_c x0 + sign2 f_d eps_hat; ``factors`` overrides (table, shift, complement, power) per name."""
    base = {**DDIM_FACTORS, **(factors or {})}

    def value(f, s, t, tp, scale):
        q, shift, comp, p = f
        if q == "scale":
            v = torch.tensor(float(scale))
        else:
            i = (t if q == "ab" else tp) + shift
            v = s.alpha_bars[min(i, s.T - 1)] if i >= 0 else torch.tensor(1.0)
        v = 1 - v if comp else v
        return v ** p

    def fn(x, t, tp, eps, grad, scale, s):
        f = {k: value(v, s, t, tp, scale) for k, v in base.items()}
        eps_hat = eps + signs[0] * f["s"] * f["shift"] * grad
        x0 = (x + signs[1] * f["a"] * eps_hat) / f["b"]
        return f["c"] * x0 + signs[2] * f["d"] * eps_hat
    return fn


def ddim_mutants():
    base = DDIM_FACTORS
    out = []
    for k, (q, shift, comp, p) in base.items():
        changes = [("dropped", (q, shift, comp, 0)), ("squared", (q, shift, comp, 2 * p)),
                   ("square-rooted", (q, shift, comp, p / 2))]
        if q != "scale":
            changes += [("index - 1", (q, shift - 1, comp, p)), ("index + 1", (q, shift + 1, comp, p))]
        for what, g in changes:
            out.append((f"factor {k} {what}", ddim_student(factors={k: g})))
    for i in range(3):
        signs = [-1, -1, 1]
        signs[i] *= -1
        out.append((f"sign {i} flipped", ddim_student(signs=tuple(signs))))
    for a, b in (("a", "b"), ("c", "d"), ("shift", "b")):
        out.append((f"factors {a} and {b} swapped", ddim_student(factors={a: base[b], b: base[a]})))
    return out


def knob_mutants():
    """(exercise, description, student function) for the exercises that are not weighted sums."""
    out = []
    # 1.2 snr = ab^1 (1 - ab)^-1
    for num, den in [(0.5, -1), (2, -1), (0, -1), (1, -0.5), (1, -2), (1, 0), (-1, 1), (1, 1)]:
        out.append(("1.2", f"snr with powers {num}, {den}", lambda ab, a=num, b=den: ab ** a * (1 - ab) ** b))
    # 2.1 time map = t / T
    for what, f in [("T - 1", lambda t, T: t.float() / (T - 1)), ("T + 1", lambda t, T: t.float() / (T + 1)),
                    ("not divided", lambda t, T: t.float()), ("squared", lambda t, T: (t.float() / T) ** 2),
                    ("square-rooted", lambda t, T: (t.float() / T) ** 0.5), ("sign", lambda t, T: -t.float() / T),
                    ("T / t", lambda t, T: T / (t.float() + 1)),
                    ("first t for all", lambda t, T: t[:1].float().expand(len(t)) / T)]:
        out.append(("2.1", f"time map {what}",
                    lambda t, T, x, f=f: f(t, T).reshape(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]).contiguous()))
    # 3.1 embedding: frequency rule, order, layout
    rules = {"base 1000": lambda i, h: 1000 ** (-i / h), "denominator dim": lambda i, h: 10000 ** (-i / (2 * h)),
             "denominator dim/2 - 1": lambda i, h: 10000 ** (-i / (h - 1)),
             "index + 1": lambda i, h: 10000 ** (-(i + 1) / h), "no minus sign": lambda i, h: 10000 ** (i / h),
             "exponent doubled": lambda i, h: 10000 ** (-2 * i / h)}
    for what, w in rules.items():
        out.append(("3.1", f"embedding {what}", lambda t, dim, w=w: embedding(t, dim, w)))
    out.append(("3.1", "embedding cos first", lambda t, dim: embedding(t, dim, order="cossin")))
    out.append(("3.1", "embedding sin only", lambda t, dim: embedding(t, dim, order="sinsin")))
    out.append(("3.1", "embedding interleaved", lambda t, dim: embedding(t, dim, interleave=True)))
    # 6.1 dropout: each comparison against p and 1 - p, the value written, one u for the batch
    ops = {"<": torch.lt, "<=": torch.le, ">": torch.gt, ">=": torch.ge}
    for (op, f), thr in itertools.product(ops.items(), ("p", "1 - p")):
        if (op, thr) in (("<", "p"), ("<=", "p")):
            continue  # the formula itself (u is continuous)
        out.append(("6.1", f"dropout where u {op} {thr}", lambda y, p, n, u, f=f, thr=thr: torch.where(
            f(u, p if thr == "p" else 1 - p), torch.full_like(y, n), y)))
    for what, v in (("class 0", 0), ("null - 1", NULL_LABEL - 1), ("-1", -1)):
        out.append(("6.1", f"dropout writes {what}",
                    lambda y, p, n, u, v=v: torch.where(u < p, torch.full_like(y, v), y)))
    out.append(("6.1", "dropout by u[0]", lambda y, p, n, u: torch.full_like(y, n) if u[0] < p else y.clone()))
    # 5.1 gradient: objective, reduction, sign
    for obj, red, sign in itertools.product(("log_softmax", "softmax", "logit"), ("sum", "mean"), (1, -1)):
        if (obj, red, sign) != ("log_softmax", "sum", 1):
            out.append(("5.1", f"gradient of {obj}, {red}, sign {sign}",
                        lambda c, x, t, y, o=obj, r=red, g=sign: gradient(c, x, t, y, o, r, g)))
    # 3.2 eps loss: target, input, reduction, kind, and the input's q_sample mutated
    for target, inp, red, kind in itertools.product(("noise", "x0", "x_t"), ("x_t", "x0", "noise"),
                                                    ("mean", "sum", "image"), ("sq", "abs")):
        if (target, inp, red, kind) != ("noise", "x_t", "mean", "sq"):
            out.append(("3.2", f"eps loss target {target}, input {inp}, {red}, {kind}",
                        lambda m, x0, t, e, s, a=target, b=inp, r=red, k=kind: eps_loss(m, x0, t, e, s, a, b, r, k)))
    for what, _, q in linear_mutants("1.1"):
        out.append(("3.2", f"eps loss with x_t's {what}",
                    lambda m, x0, t, e, s, q=q: F.mse_loss(m(q(x0, t, e, s), t), e)))
    # 4.2 classifier loss
    for what, f in [("sum", lambda lg, y: F.cross_entropy(lg, y, reduction="sum")),
                    ("softmax first", lambda lg, y: F.cross_entropy(lg.softmax(1), y)),
                    ("nll of logits", lambda lg, y: F.nll_loss(lg, y)),
                    ("sign", lambda lg, y: -F.cross_entropy(lg, y))]:
        out.append(("4.2", f"classifier loss {what}",
                    lambda c, x0, y, t, e, s, f=f: f(c(s.q_sample(x0, t, e), t), y)))
    out.append(("4.2", "classifier loss on clean x0", lambda c, x0, y, t, e, s: F.cross_entropy(c(x0, t), y)))
    # 4.1 time embedding
    for what, f in [("h dropped", lambda h, p: p.expand_as(h)), ("multiplied", lambda h, p: h * p),
                    ("subtracted", lambda h, p: h - p), ("doubled", lambda h, p: h + 2 * p),
                    ("h doubled", lambda h, p: 2 * h + p)]:
        out.append(("4.1", f"time embedding {what}", lambda h, e, proj, f=f: f(h, proj(e)[:, :, None, None])))
    return out


def embedding(t, dim, w=lambda i, h: 10000 ** (-i / h), order="sincos", interleave=False):
    half = dim // 2
    ang = t.float()[:, None] * w(torch.arange(half, dtype=torch.float32), half)[None]
    if interleave:
        return torch.stack([ang.sin(), ang.cos()], 2).reshape(len(t), dim)
    a, b = {"sincos": (ang.sin(), ang.cos()), "cossin": (ang.cos(), ang.sin()), "sinsin": (ang.sin(), ang.sin())}[order]
    return torch.cat([a, b], 1)


def gradient(clf, x, t, y, objective, reduction, sign):
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        lg = clf(xx, t)
        per = {"log_softmax": F.log_softmax(lg, 1), "softmax": F.softmax(lg, 1), "logit": lg}[objective]
        picked = per.gather(1, y[:, None])
        (g,) = torch.autograd.grad(picked.sum() if reduction == "sum" else picked.mean(), xx)
    return sign * g


def eps_loss(model, x0, t, e, s, target, inp, red, kind):
    x_t = s.q_sample(x0, t, e)
    pred = model({"x_t": x_t, "x0": x0, "noise": e}[inp], t)
    err = pred - {"noise": e, "x0": x0, "x_t": x_t}[target]
    err = err ** 2 if kind == "sq" else err.abs()
    return {"mean": err.mean(), "sum": err.sum(), "image": err.flatten(1).sum(1).mean()}[red]


CHECKS = {"1.1": checks.check_q_sample, "1.2": checks.check_snr, "2.1": checks.check_time_map,
          "2.2": checks.check_posterior_mean, "2.3": checks.check_ddpm_step, "3.1": checks.check_sinusoidal_embedding,
          "3.2": checks.check_eps_loss, "3.3": checks.check_reverse_mean, "4.1": checks.check_add_time_embedding,
          "4.2": checks.check_classifier_loss, "5.1": checks.check_classifier_grad, "5.2": checks.check_guided_mean,
          "5.3": checks.check_guided_ddim_step, "6.1": checks.check_drop_labels, "6.2": checks.check_cfg_eps}


def all_mutants():
    """(exercise, description, function, phrases that must appear, phrases that must not)."""
    rows = []
    for ex, (_, phrases) in LINEAR.items():
        for what, touched, fn in linear_mutants(ex):
            rows.append((ex, what, fn, [phrases[k] for k in touched],
                         [v for k, v in phrases.items() if k not in touched]))
    for what, fn in ddim_mutants():
        rows.append(("5.3", what, fn, [], []))
    for ex, what, fn in knob_mutants():
        rows.append((ex, what, fn, [], []))
    return rows


def run(ex, fn):
    start = time.perf_counter()
    try:
        CHECKS[ex](fn)
        message = None
    except CheckFailed as err:
        message = str(err)
    return message, time.perf_counter() - start


GENERIC = re.compile(r"wrong values \(largest error [^)]*\)$")
NUMBERS_ONLY = re.compile(r"(= -?[0-9.e+-]+|by up to [0-9.e+-]+|is \[[^]]*\]|differ at \d+ places)$")


def has_cause(message):
    """A hint from the table, or a probe sentence that says more than the numbers (a verified relation)."""
    lines = message.splitlines()
    if "wrong values" not in lines[0]:
        return True
    return any(not NUMBERS_ONLY.search(line) for line in lines[1:])


def score(message, must, must_not):
    """(named, misleading) for a failed check's message."""
    if message is None:
        return False, False
    diagnosed = not GENERIC.search(message.splitlines()[0]) or len(message.splitlines()) > 1 or \
        "combined differently" in message
    if "wrong values" in message.splitlines()[0] and must:   # the probe's report: each changed term named
        diagnosed = all(p in message for p in must)
    misleading = "wrong values" in message.splitlines()[0] and any(p in message for p in must_not)
    return diagnosed, misleading


def test_mechanical_mutants_are_caught_and_named_and_never_misleading(capsys):
    rows, table, slowest = [], {}, (0.0, "")
    for ex, what, fn, must, must_not in all_mutants():
        message, took = run(ex, fn)
        # a mutant must compute
        assert message is None or " raised " not in message.splitlines()[0], (ex, what, message)
        named, misleading = score(message, must, must_not)
        caught = message is not None
        slowest = max(slowest, (took, f"{ex} {what}"))
        c, n, m, total, k = table.get(ex, (0, 0, 0, 0, 0))
        table[ex] = (c + caught, n + named, m + misleading, total + 1, k + (caught and has_cause(message)))
        if not caught or not named or misleading:
            rows.append(f"{ex} {what:50s} {'caught' if caught else 'MISSED'} {'named' if named else '-'} "
                        f"{'MISLEADING' if misleading else ''} {(message or '').replace(chr(10), ' | ')[:300]}")
    totals = [sum(v[i] for v in table.values()) for i in range(5)]
    with capsys.disabled():
        print("\nexercise  mutants  caught  named  misleading  with a cause")
        for ex in sorted(table):
            c, n, m, total, k = table[ex]
            print(f"{ex:8s} {total:8d} {c:7d} {n:6d} {m:11d} {k:13d}")
        print(f"all      {totals[3]:8d} {totals[0]:7d} {totals[1]:6d} {totals[2]:11d} {totals[4]:13d}   "
              f"named {totals[1] / totals[3]:.1%}, with a cause {totals[4] / totals[3]:.1%}; "
              f"slowest check {slowest[0] * 1000:.0f} ms ({slowest[1]})")
        print("\n".join(rows))
    assert totals[0] == totals[3], "mutants accepted:\n" + "\n".join(r for r in rows if "MISSED" in r)
    assert totals[2] == 0, "misleading:\n" + "\n".join(r for r in rows if "MISLEADING" in r)
    assert totals[1] >= 0.95 * totals[3], "\n".join(rows)


EQUIVALENT_STYLES = ("index", "gather", "pow", "inplace")


@pytest.mark.parametrize("exercise", sorted(LINEAR))
@pytest.mark.parametrize("style", EQUIVALENT_STYLES)
def test_equivalent_rewrites_of_each_weighted_sum_are_accepted(exercise, style):
    terms, _ = LINEAR[exercise]
    CHECKS[exercise](as_student(exercise, terms, style))


def test_the_ddim_reference_as_written_here_is_accepted():
    checks.check_guided_ddim_step(ddim_student())


def test_the_readme_quotes_the_checks_own_message():
    from pathlib import Path

    def q_sample(x0, t, noise, s):
        ab = s.alpha_bars[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab) * noise
    message, _ = run("1.1", q_sample)
    quoted = re.search(r'for example "(the coefficient of the noise[^"]*)"',
                       " ".join(Path(__file__).parent.parent.joinpath("README.md").read_text().split()))
    assert quoted and quoted.group(1) in " ".join(message.split()), (quoted, message)


def clipped_ddim(x, t, tp, eps, grad, scale, s):
    """x0_hat clipped to [-1, 1]: right in spirit, not the exercise's formula, and not a weighted sum."""
    ab, abp = s.alpha_bars[t], (s.alpha_bars[tp] if tp >= 0 else torch.tensor(1.0))
    eps_hat = eps - scale * (1 - ab).sqrt() * grad
    x0 = ((x - (1 - ab).sqrt() * eps_hat) / ab.sqrt()).clamp(-1, 1)
    return abp.sqrt() * x0 + (1 - abp).sqrt() * eps_hat


@pytest.mark.parametrize("exercise, fn", [
    ("5.3", clipped_ddim),
    ("1.1", lambda x0, t, e, s: weighted_sum(LINEAR["1.1"][0], s, t, {"x0": x0, "noise": e}) + 0.1 * x0 * e),
])
def test_a_function_that_is_not_a_weighted_sum_gets_no_term_level_cause(exercise, fn):
    message, _ = run(exercise, fn)
    assert message is not None and "not a weighted sum" in message and "coefficient of" not in message, message
