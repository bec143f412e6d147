"""Term probes: read each term of a student's formula on its own, and say how it differs.

Most formulas of the course are weighted sums of their inputs, for example
``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``. Calling the student's function
with one input set to ones and every other to zeros reads that input's weight (its
coefficient) alone, for each sample. A coefficient that differs from the formula's is then
compared with the formula's coefficient changed in one way: a factor dropped, squared,
square-rooted or inverted, a factor swapped for its neighbour (an index moved by one,
alpha_t for alpha_bar_t, 1 - alpha_bar for alpha_bar), an extra factor, the sign, or another
term's coefficient. A change is named only when it reproduces the probed coefficient at every
probe point; otherwise the report gives the numbers and nothing more.

A coefficient is written as a sum of products of named quantities ("atoms"), each raised to a
power: ``Coef.of(("alpha_bar_t", 0.5))`` is sqrt(alpha_bar_t).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Mono:
    """c * prod(atom ** power): one product of a coefficient."""

    c: float
    powers: tuple  # ((atom name, power), ...), each atom at most once, no zero powers

    def value(self, atoms: dict) -> torch.Tensor:
        out = torch.tensor(float(self.c), dtype=torch.float64)
        for name, p in self.powers:
            out = out * atoms[name].double() ** p
        return out

    def with_power(self, name: str, p: float) -> "Mono":
        rest = tuple((n, q) for n, q in self.powers if n != name)
        return Mono(self.c, rest + (((name, p),) if p != 0 else ()))


@dataclass(frozen=True)
class Coef:
    """A sum of products: the coefficient of one input in a formula."""

    monos: tuple

    @staticmethod
    def of(*factors, c: float = 1.0) -> "Coef":
        return Coef((Mono(c, tuple(factors)),))

    def __add__(self, other: "Coef") -> "Coef":
        return Coef(self.monos + other.monos)

    def value(self, atoms: dict) -> torch.Tensor:
        n = len(next(iter(atoms.values())))
        out = torch.zeros(n, dtype=torch.float64)
        for m in self.monos:
            out = out + m.value(atoms)
        return out

    def text(self) -> str:
        if not self.monos:
            return "0"
        parts = [_mono_text(m) for m in self.monos]
        out = parts[0]
        for p in parts[1:]:
            out += f" - {p[1:]}" if p.startswith("-") else f" + {p}"
        return out


def _base(name: str) -> str:
    return f"({name})" if " " in name else name


def factor_text(name: str, p: float) -> str:
    """``sqrt(name)`` for p = 1/2, ``name^2`` for p = 2, and so on (a negative p is written as positive:
    the caller puts it below the fraction bar)."""
    p = abs(p)
    if p == 0.5:
        return f"sqrt({name})"
    if p == 1:
        return _base(name)
    return f"{_base(name)}^{p:g}"


def _mono_text(m: Mono) -> str:
    num = [factor_text(n, p) for n, p in m.powers if p > 0]
    den = [factor_text(n, p) for n, p in m.powers if p < 0]
    c = abs(m.c)
    if c != 1 or not num:
        num.insert(0, f"{c:g}")
    out = " ".join(num)
    if den:
        out += " / " + (den[0] if len(den) == 1 else "(" + " ".join(den) + ")")
    return ("-" if m.c < 0 else "") + out


def signed_text(name: str, p: float) -> str:
    """A factor as it reads on its own: ``1 / sqrt(name)`` for p = -1/2."""
    if p == 1:
        return name
    return factor_text(name, p) if p > 0 else f"1 / {factor_text(name, p)}"


def _glossed(old: str, new: str, gloss: str) -> str:
    return f"it has {new} where the formula has {old}" + (f" ({gloss})" if gloss else "")


def _power_changes(name: str, p: float):
    """(new power, gloss) for each way a factor's power can go wrong."""
    yield 0, None
    yield 2 * p, "the square root is missing" if p in (0.5, -0.5) else "squared"
    yield p / 2, "a square root too many"
    yield -p, "it divides where it should multiply, or the reverse"


def candidates(ref: Coef, neighbours: dict, extra_atoms) -> list:
    """(coefficient, description) for every one-change variant of ``ref``, simplest first."""
    out = [(Coef(()), "the term is missing"),
           (Coef(tuple(Mono(-m.c, m.powers) for m in ref.monos)), "its sign is flipped")]
    names = sorted({n for m in ref.monos for n, _ in m.powers})
    groups = [ref.monos] + ([(m,) for m in ref.monos] if len(ref.monos) > 1 else [])
    for group in groups:
        everywhere = group is ref.monos and len(ref.monos) > 1
        where = " (in every place it appears)" if everywhere else ""
        for name in names:
            powers = {dict(m.powers).get(name) for m in group} - {None}
            if len(powers) != 1 or (everywhere and sum(dict(m.powers).get(name) is not None for m in group) < 2):
                continue
            (p,) = powers

            def swap(fn):
                return Coef(tuple(fn(m) if m in group and dict(m.powers).get(name) is not None else m
                                  for m in ref.monos))
            old = signed_text(name, p)
            for q, gloss in _power_changes(name, p):
                new = swap(lambda m: m.with_power(name, q))
                desc = (f"the factor {old} is missing{where}" if q == 0
                        else _glossed(old, signed_text(name, q), gloss) + where)
                out.append((new, desc))
            for other, gloss in neighbours.get(name, ()):
                new = swap(lambda m: m.with_power(name, 0).with_power(other, dict(m.powers).get(other, 0) + p))
                out.append((new, _glossed(old, signed_text(other, p), gloss) + where))
    if len(ref.monos) > 1:
        for m in ref.monos:
            rest = tuple(k for k in ref.monos if k is not m)
            out.append((Coef(rest), f"the part {_mono_text(m)} is missing"))
            out.append((Coef(rest + (Mono(-m.c, m.powers),)), f"the part {_mono_text(m)} has the wrong sign"))
    if len(ref.monos) == 1 and len(ref.monos[0].powers) > 1:
        (m,) = ref.monos
        for k, what in ((2, "the whole term is squared"), (0.5, "the whole term is square-rooted")):
            out.append((Coef((Mono(m.c, tuple((n, p * k) for n, p in m.powers)),)), what))
    for name in extra_atoms:
        for q in (1, -1, 0.5, -0.5):
            new = Coef(tuple(m.with_power(name, dict(m.powers).get(name, 0) + q) for m in ref.monos))
            text = factor_text(name, q)
            out.append((new, f"it has an extra factor {text}" if q > 0 else f"it is divided by {text} as well"))
    return out


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.double(), b.double()
    if a.shape != b.shape or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False
    return bool(torch.allclose(a, b, rtol=2e-4, atol=2e-6 * (1 + float(b.abs().max()))))


@dataclass
class Term:
    """One input of a weighted-sum formula: the input's name, the symbol the prose uses for it and the
    formula's coefficient of it. ``phrase`` names what is probed ("the coefficient of noise" by default)."""

    name: str
    symbol: str
    ref: Coef
    phrase: str = ""

    def __post_init__(self):
        self.phrase = self.phrase or f"the coefficient of {self.symbol}"


OFF_BY_ONE = "an off-by-one in the index"


def schedule_atoms(s, t: torch.Tensor, t_prev: torch.Tensor | None = None) -> tuple:
    """(atoms, neighbours): the schedule's quantities at the probe points' timesteps t (and DDIM's t'),
    with index -1 standing for the clean end of the chain (alpha_bar = 1), and for each quantity the
    ones a formula is easily written with by mistake."""
    T = len(s.alpha_bars)

    def ab(i):
        return torch.where(i >= 0, s.alpha_bars[i.clamp(0, T - 1)].double(), torch.ones((), dtype=torch.float64))
    def at(table, i):
        return table[i.clamp(0, T - 1)].double()
    atoms = {"alpha_bar_t": ab(t), "alpha_bar_{t-1}": ab(t - 1), "alpha_bar_{t+1}": ab((t + 1).clamp(max=T - 1)),
             "alpha_bar_{t-2}": ab(t - 2)}
    for name, table in (("alpha", s.alphas), ("beta", s.betas), ("posterior_variance", s.posterior_variance)):
        for shift, index in (("t", t), ("{t-1}", t - 1), ("{t+1}", t + 1)):
            atoms[f"{name}_{shift}"] = at(table, index)
    for k in ("alpha_bar_t", "alpha_bar_{t-1}", "alpha_bar_{t+1}", "alpha_bar_{t-2}"):
        atoms[f"1 - {k}"] = 1 - atoms[k]
    bar = "alpha_t is one step's factor, alpha_bar_t the product up to t"
    nb = {
        "alpha_bar_t": [("alpha_bar_{t-1}", OFF_BY_ONE), ("alpha_bar_{t+1}", OFF_BY_ONE), ("alpha_t", bar),
                        ("1 - alpha_bar_t", "the signal's share where the noise's belongs")],
        "1 - alpha_bar_t": [("1 - alpha_bar_{t-1}", OFF_BY_ONE), ("1 - alpha_bar_{t+1}", OFF_BY_ONE),
                            ("beta_t", "beta_t is one step's noise, 1 - alpha_bar_t all of it up to t"),
                            ("alpha_bar_t", "the signal's share where the noise's belongs")],
        "alpha_bar_{t-1}": [("alpha_bar_t", OFF_BY_ONE), ("alpha_bar_{t-2}", OFF_BY_ONE),
                            ("1 - alpha_bar_{t-1}", "the signal's share where the noise's belongs")],
        "1 - alpha_bar_{t-1}": [("1 - alpha_bar_t", OFF_BY_ONE), ("1 - alpha_bar_{t-2}", OFF_BY_ONE),
                                ("alpha_bar_{t-1}", "the signal's share where the noise's belongs")],
        "alpha_t": [("alpha_bar_t", bar), ("alpha_{t-1}", OFF_BY_ONE), ("alpha_{t+1}", OFF_BY_ONE),
                    ("beta_t", "beta_t = 1 - alpha_t")],
        "beta_t": [("alpha_t", "alpha_t = 1 - beta_t"), ("beta_{t-1}", OFF_BY_ONE), ("beta_{t+1}", OFF_BY_ONE),
                   ("1 - alpha_bar_t", "1 - alpha_bar_t is the noise up to t, beta_t one step's"),
                   ("posterior_variance_t", "the posterior variance where beta_t belongs")],
        "posterior_variance_t": [("posterior_variance_{t-1}", OFF_BY_ONE), ("posterior_variance_{t+1}", OFF_BY_ONE),
                                 ("beta_t", "beta_t where the posterior variance belongs")],
    }
    if t_prev is not None:
        for name, i in (("t'", t_prev), ("t'-1", t_prev - 1), ("t'+1", (t_prev + 1).clamp(max=T - 1))):
            atoms[f"alpha_bar_{{{name}}}"] = ab(i)
            atoms[f"1 - alpha_bar_{{{name}}}"] = 1 - ab(i)
        to_t1 = "the step goes to t', the next timestep of the DDIM chain, not to t - 1"
        for c in ("", "1 - "):
            other = "alpha_bar_{t'}" if c else "1 - alpha_bar_{t'}"
            nb[f"{c}alpha_bar_{{t'}}"] = [
                (f"{c}alpha_bar_{{t-1}}", to_t1), (f"{c}alpha_bar_t", "alpha_bar_t where the next step's belongs"),
                (f"{c}alpha_bar_{{t'-1}}", OFF_BY_ONE), (f"{c}alpha_bar_{{t'+1}}", OFF_BY_ONE),
                (other, "the signal's share where the noise's belongs")]
    return atoms, nb


NOT_A_SUM = ("reading each input alone (the others zero) does not add up to your result with all the inputs at "
             "once: your function is not a weighted sum of its inputs, as the formula is, so its terms cannot be "
             "read apart")


class NotASum(Exception):
    """The function's terms read one at a time do not add up to its result: a term-level report would mislead."""


def read_coefficients(call, inputs: dict, names) -> tuple:
    """(coefficients {name: [B]}, offset [B], varies {name: bool}) of ``call(**inputs)`` read one input at a
    time: that input set to ones, every other to zeros. ``varies`` marks a coefficient that is not the same
    at every element of a sample (the function is then not a per-sample weighted sum). Raises NotASum when
    the coefficients, applied to the given inputs, do not reproduce the function's result on them."""
    with torch.no_grad():
        zeros = {n: torch.zeros_like(v) for n, v in inputs.items() if n in names}
        base = call(**{**inputs, **zeros}).detach().double()
        offset = base.flatten(1).mean(1)
        coefs, varies = {}, {}
        for n in names:
            out = (call(**{**inputs, **zeros, n: torch.ones_like(inputs[n])}).detach().double() - base).flatten(1)
            coefs[n] = out.mean(1)
            varies[n] = bool((out.max(1).values - out.min(1).values).abs().max() > 1e-5 * (1 + out.abs().max()))
        if not any(varies.values()):
            full = call(**inputs).detach().double()
            summed = base.clone()
            for n in names:
                c = coefs[n].reshape(-1, *([1] * (full.dim() - 1)))
                summed = summed + c * inputs[n].double()
            rows = torch.isfinite(full.flatten(1)).all(1) & torch.isfinite(summed.flatten(1)).all(1)
            if rows.any() and not close(full[rows], summed[rows]):   # rows that are not finite are reported as such
                raise NotASum(NOT_A_SUM)
    return coefs, offset, varies


def explain(term: Term, got: torch.Tensor, atoms: dict, neighbours: dict, others: list) -> str | None:
    """A verified description of how ``got`` (the probed coefficient, one value per probe point) differs
    from ``term.ref``, or None when no single change reproduces it."""
    for other in others:
        for k, what in ((1, ""), (-1, "minus ")):
            if close(got, k * other.ref.value(atoms)):
                return f"it equals {what}the formula's coefficient of {other.symbol}, {other.ref.text()}"
    extras = [a for a in atoms if _extra_ok(a, term.ref)]
    matches = [(cand, desc) for cand, desc in candidates(term.ref, neighbours, extras) if close(got, cand.value(atoms))]
    if not matches:
        return None
    if len({desc for _, desc in matches}) == 1:
        return matches[0][1]
    # several changes give these same numbers: the probe cannot tell which was made, so state only the value
    return f"it equals {min((c.text() for c, _ in matches), key=len)}"


def _extra_ok(name: str, ref: Coef) -> bool:
    return all(dict(m.powers).get(name) is None for m in ref.monos)


def term_report(terms: list, got: dict, atoms: dict, labels: list, neighbours: dict, offset=None,
                varies=None) -> list:
    """One sentence per wrong term, in the formula's symbols: its probed value at the first point where it
    differs, the formula's value there, and a verified description of the change when one is found."""
    lines = []
    finite = torch.stack([torch.isfinite(got[tm.name]) for tm in terms]).all(0)
    if not finite.all():   # read the terms where the result is finite, and say where it is not
        where = ", ".join(labels[i] for i in (~finite).nonzero().flatten().tolist())
        lines.append(f"at {where} the result is not finite (NaN or inf): a division by zero, or the square root of a "
                     "negative number, there?")
        keep = finite.nonzero().flatten()
        got = {k: v[keep] for k, v in got.items()}
        atoms = {k: v[keep] for k, v in atoms.items()}
        labels = [labels[i] for i in keep.tolist()]
        offset = None if offset is None else offset[keep]
    for term in terms:
        want = term.ref.value(atoms)
        g = got[term.name]
        if varies and varies.get(term.name):
            lines.append(f"{term.phrase} is not one number per sample: it changes from pixel to "
                         "pixel (a per-sample factor is broadcast along the wrong axis?)")
            continue
        if close(g, want):
            continue
        bad = int(torch.nan_to_num((g - want).abs(), nan=float("inf")).argmax())
        line = (f"{term.phrase} is {g[bad]:.4g} at {labels[bad]}, where the formula's "
                f"{term.ref.text()} = {want[bad]:.4g}")
        why = explain(term, g, atoms, neighbours, [o for o in terms if o is not term])
        lines.append(line + (f": {why}" if why else ""))
    if offset is not None and not close(offset, torch.zeros_like(offset)):
        bad = int(offset.abs().argmax())
        lines.append(f"with every input zero the result is {offset[bad]:.4g} at {labels[bad]}, not 0: a constant is "
                     "added that the formula does not have")
    return lines
