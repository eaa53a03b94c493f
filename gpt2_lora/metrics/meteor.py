"""METEOR 1.5 through the official jar, one long-lived JVM per instance (``-stdio`` protocol).

Two builds, both from the pycocoevalcap==1.2 wheel:

* ``variant="coco"``: ``meteor/meteor-1.5.jar`` with ``data/paraphrase-en.gz`` beside it, run as
  coco-caption (and so e2e-metrics) runs it: ``-stdio -l en -norm``; one ``SCORE`` line per segment
  gives its sufficient statistics, then one ``EVAL ||| s1 ||| s2 …`` line gives the segment scores and
  the corpus score (this build's EVAL accepts many statistics at once).
* ``variant="stock"``: ``spice/lib/Meteor-1.5.jar``, the stock release that GenerationEval runs on
  files (``-l en -norm -r N``). Its EVAL takes one set of statistics only, so we add the per-segment
  statistics ourselves (all 23 numbers are counts that ``MeteorStats.addStats`` sums) and EVAL the sum,
  which is exactly what the jar's file mode does before printing its ``Final score``.

The JVM starts in ``__init__`` (loading the paraphrase table takes several seconds), so callers should
create the scorer early and do other work while it loads.

``open_meteor`` picks the route: the jar, or ``meteor_python.PythonMeteor`` (the same statistics and
scores in Python, no Java), by default the jar when a Java runtime is found and Python otherwise.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from typing import Sequence

from ..errors import UserError
from .java import JavaUnavailable, jar_path, java_available, require_java
from .meteor_python import PythonMeteor, check_variant, clean_segment, segment_refs

__all__ = ["Meteor", "MeteorUnavailable", "PythonMeteor", "ROUTES", "java_available", "open_meteor"]

ROUTES = ("jar", "python")

# Double.toString output is parsed back by java.util.Scanner, which follows the JVM's locale: pin it,
# and with it String.toLowerCase (a Turkish locale would change -norm's lowercasing).
_JVM_LOCALE = ["-Duser.language=en", "-Duser.country=US"]
_STATS_LENGTH = 23  # MeteorStats: 4 lengths, 4 stages x 4 match counts, chunks, 2 word-match counts


class MeteorUnavailable(JavaUnavailable):
    """METEOR cannot run here (no Java, jar missing or not the pinned build, or the JVM died)."""


class Meteor:
    """METEOR 1.5 scorer. Use as a context manager or call ``close()``; safe to share across threads."""

    route = "jar"

    def __init__(self, variant: str = "coco", num_refs: int | None = None, lang: str = "en",
                 norm: bool = True):
        check_variant(variant)
        self.variant = variant
        self.num_refs = num_refs
        self._lock = threading.Lock()
        self._proc = None
        try:
            java = require_java()
            paraphrase = jar_path("paraphrase_en")
            jar = jar_path("meteor_coco" if variant == "coco" else "meteor_stock")
        except JavaUnavailable as err:
            raise MeteorUnavailable(f"METEOR unavailable: {err}") from None
        cmd = [java, "-Xmx2G", *_JVM_LOCALE, "-jar", str(jar), "-", "-", "-stdio", "-l", lang]
        if norm:
            cmd.append("-norm")
        if variant == "stock" and lang == "en":
            # The stock jar looks for data/paraphrase-en.gz next to itself; spice/lib has none.
            cmd += ["-a", str(paraphrase)]
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as err:
            raise MeteorUnavailable(f"METEOR unavailable: cannot start {java}: {err}") from None

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> "Meteor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- protocol ------------------------------------------------------------------------------
    def _died(self) -> MeteorUnavailable:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode("utf-8", "replace").splitlines()
                 if line.strip()]
        detail = lines[-1].strip() if lines else "no message"
        code = self._proc.poll() if self._proc is not None else None
        return MeteorUnavailable(f"METEOR JVM stopped (exit code {code}): {detail}")

    def _exchange(self, lines: Sequence[str], n_answers: int) -> list[str]:
        """Send ``lines`` and read ``n_answers`` lines back; a writer thread keeps both pipes moving."""
        if self._proc is None:
            raise ValueError("Meteor scorer is closed")
        payload = "".join(line + "\n" for line in lines).encode("utf-8")
        failure: list[BaseException] = []

        def write() -> None:
            try:
                self._proc.stdin.write(payload)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as err:
                failure.append(err)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        answers = []
        for _ in range(n_answers):
            raw = self._proc.stdout.readline()
            if not raw:
                writer.join()
                raise self._died()
            answer = raw.decode("utf-8").strip()
            if answer.startswith("Error"):
                writer.join()
                self.close()  # answers still queued would desynchronise later requests
                raise UserError(f"METEOR rejected its input: {answer}")
            answers.append(answer)
        writer.join()
        if failure:
            raise self._died()
        return answers

    def _score_line(self, hyp: str, refs: Sequence[str]) -> str:
        refs = segment_refs(refs, self.num_refs)
        # As coco-caption: drop '|||' (the field separator) from the hypothesis, squeeze double spaces.
        hyp = clean_segment(hyp).replace("|||", "").replace("  ", " ")
        refs = [clean_segment(ref).replace("|||", "") for ref in refs]
        return " ||| ".join(("SCORE", " ||| ".join(refs), hyp))

    def stats(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[str]:
        """Per-segment METEOR sufficient statistics, as the jar prints them."""
        if len(hyps) != len(refs):
            raise UserError(f"METEOR: {len(hyps)} hypotheses but {len(refs)} reference sets")
        lines = [self._score_line(hyp, seg_refs) for hyp, seg_refs in zip(hyps, refs)]
        with self._lock:
            return self._exchange(lines, len(lines))

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]],
              segments: bool = False) -> tuple[float, list[float] | None]:
        """(corpus score, per-segment scores or None)."""
        if not hyps:
            raise UserError("METEOR: nothing to score (no segments)")
        stats = self.stats(hyps, refs)
        with self._lock:
            if self.variant == "coco":
                answers = self._exchange(["EVAL ||| " + " ||| ".join(stats)], len(stats) + 1)
                seg_scores = [float(a) for a in answers[:-1]]
                return float(answers[-1]), (seg_scores if segments else None)
            total = [0.0] * _STATS_LENGTH
            for line in stats:
                _add_stats(total, line)
            request = ["EVAL ||| " + " ".join(_java_double(v) for v in total)]
            if segments:
                request += ["EVAL ||| " + line for line in stats]
            answers = self._exchange(request, len(request))
            seg_scores = [float(a) for a in answers[1:]] if segments else None
            return float(answers[0]), seg_scores

    def corpus_score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
        """Corpus-level METEOR (the number the official scorers print)."""
        return self.score(hyps, refs)[0]

    def segment_scores(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
        """METEOR of each segment on its own."""
        return self.score(hyps, refs, segments=True)[1]


def _add_stats(total: list[float], line: str) -> None:
    """``MeteorStats.addStats`` on the jar's serialised statistics (summing in the jar's order).

    Layout: test/ref length, test/ref function words, then per stage (exact, stem, synonym,
    paraphrase) test-content, ref-content, test-function, ref-function matches, then chunks and the
    test/ref word matches. The jar does not count the chunk of a segment that matches completely in
    one chunk (all words matched on both sides and chunks == 1); we must not either.
    """
    values = [float(v) for v in line.split()]
    if len(values) != _STATS_LENGTH:
        raise MeteorUnavailable(f"METEOR printed unexpected statistics: {line!r}")
    test_matches = ref_matches = 0.0
    for stage in range(4):
        content, function = 4 + 4 * stage, 6 + 4 * stage
        test_matches = test_matches + values[content] + values[function]
        ref_matches = ref_matches + values[content + 1] + values[function + 1]
    perfect = test_matches == values[0] and ref_matches == values[1] and values[20] == 1.0
    for i, value in enumerate(values):
        if i != 20 or not perfect:
            total[i] += value


def _java_double(value: float) -> str:
    # java.util.Scanner.nextDouble reads plain decimals; repr() is exact and plain below 1e16.
    text = repr(value)
    return text if "e" not in text else f"{value:.1f}"


def open_meteor(variant: str = "coco", num_refs: int | None = None,
                route: str | None = None) -> tuple["Meteor | PythonMeteor", list[str]]:
    """(scorer, notes). ``route``: "jar", "python", or None: the jar when Java is found, else Python,
    and Python also when the jar cannot start (a note says why). Raises MeteorUnavailable when the
    route asked for (or, with None, neither) can run."""
    if route not in (None, *ROUTES):
        raise UserError(f"unknown METEOR route {route!r} (expected one of {', '.join(ROUTES)})")
    notes: list[str] = []
    if route == "jar" or (route is None and java_available()):
        try:
            return Meteor(variant, num_refs=num_refs), notes
        except MeteorUnavailable as err:
            if route == "jar":
                raise
            notes.append(f"{err}; METEOR computed in Python instead (same scores)")
    try:
        return PythonMeteor(variant, num_refs=num_refs), notes
    except UserError as err:
        message = str(err) if str(err).startswith("METEOR") else f"METEOR unavailable: {err}"
        raise MeteorUnavailable("; ".join([*notes, message])) from None
