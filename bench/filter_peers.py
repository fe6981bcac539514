"""The build's chain written with the tools a user would pick instead: polars and duckdb.

Each peer reads the benchmark's Parquet candidates and writes
``curated.parquet`` and ``rejected.parquet`` with the build's columns, rows
and values (``bench_filters`` checks that, column by column), doing what the
recipe ``correctness``, ``majority_vote``, ``entropy {threshold: 0.7}`` does
with the ``gsm8k`` task:

- ``answer``: the first number after the last answer marker (``####``,
  ``The answer is``, ``the answer is``, ``-->``, ``A:`` at a line start),
  else the text's last number; ``$`` and ``,`` deleted first; a ``-`` is a
  sign only where no letter or digit comes before it. ``reference``: the first
  number after its last ``####``, else read like an answer. Both canonical
  (``18.0`` and ``018`` are ``18``).
- ``correct``, then the vote of each question's correct rows (ties to the
  answer seen first), then the entropy of the answers of the rows that agree
  with it (``H < 0.7``, agreeing with the vote again); each score null where
  its step was not reached; ``keep``, ``weight``, ``dropped_by``.

Written as well as we could: the markers are replaced by one character in
one pass, so the tail after the last marker is one end-anchored match (a
regex engine finds it from the end of the text); every regex is one pass;
the votes are group-bys joined back, not per-row Python. Both peers write
zstd at level 1, as the build (pyarrow's default) does. They differ from the
build's rule only on text no real rationale holds (overlapping markers such
as ``#####``, a NUL character in the text).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

UNSIGNED = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
MARKERS = r"####|[Tt]he answer is|-->|(?m:^)A:"
SENTINEL = "\x00"
# The first token of a text (no lookbehind in either engine: the character before it is consumed).
FIRST_TOKEN = (rf"(?s)^.*?(?:(?:^|[^0-9A-Za-z])(?P<signed>-{UNSIGNED})"
               rf"|(?:^|[^0-9.\-]|[0-9A-Za-z]-)(?P<unsigned>{UNSIGNED}))")
# The last token, end-anchored: nothing after it that could start a token.
LAST_TOKEN = (rf"(?s)(?:(?:^|[^0-9A-Za-z])(?P<signed>-{UNSIGNED})|(?:^|[^0-9.\-]|[0-9A-Za-z]-)(?P<unsigned>{UNSIGNED}))"
              r"[^0-9]*$")
THRESHOLD = 0.7
COLUMNS = ["id", "question", "rationale", "answer", "reference", "sample", "correct", "vote_answer", "vote_share",
           "answer_entropy", "keep", "weight", "dropped_by"]


# -- polars ------------------------------------------------------------------


def run_polars(path: Path, out: Path) -> int:
    """The chain in polars (lazy, all cores, every intermediate a column); returns the rows kept."""
    import polars as pl

    def token(texts: str, pattern: str) -> pl.Expr:
        groups = pl.col(texts).str.replace_all(r"[$,]", "").str.extract_groups(pattern)
        return pl.coalesce(groups.struct.field("signed"), groups.struct.field("unsigned"))

    def canonical(tokens: pl.Expr) -> pl.Expr:
        return (tokens.str.replace(r"(\.[0-9]*?)0+$", "${1}").str.replace(r"\.$", "")
                .str.replace(r"^(-?)0+", "${1}").str.replace(r"^(-?)\.", "${1}0.").str.replace(r"^-?$", "0"))

    def after_last(texts: str, markers: str) -> pl.Expr:
        return pl.col(texts).str.replace_all(markers, SENTINEL).str.extract(rf"{SENTINEL}([^{SENTINEL}]*)$", 1)

    def vote(frame: pl.LazyFrame, reach: str, *names: str) -> pl.LazyFrame:
        """Per id among reaching rows: the answer with most votes (first seen wins a tie), its share, the entropy."""
        votes = (frame.filter(pl.col(reach) & pl.col("answer").is_not_null())
                 .group_by("id", "answer").agg(n=pl.len(), first=pl.col("_i").min())
                 .with_columns(p=pl.col("n") / pl.col("n").sum().over("id")))
        top, share, entropy = names
        return (votes.sort(["id", "n", "first"], descending=[False, True, False])
                .group_by("id").agg(pl.first("answer").alias(top), pl.first("p").alias(share),
                                    (-(pl.col("p") * pl.col("p").log()).sum()).alias(entropy)))

    frame = (
        pl.scan_parquet(path).with_row_index("_i")
        .with_columns(_tail=after_last("rationale", MARKERS), _ref_tail=after_last("reference", "####"))
        .with_columns(_first=token("_tail", FIRST_TOKEN), _last=token("rationale", LAST_TOKEN),
                      _ref_first=token("_ref_tail", FIRST_TOKEN), _ref_last=token("reference", LAST_TOKEN))
        .with_columns(answer=canonical(pl.when(pl.col("_tail").is_not_null()).then("_first").otherwise("_last")),
                      reference=canonical(pl.when(pl.col("_ref_tail").is_not_null()).then("_ref_first")
                                          .otherwise("_ref_last")))
        .with_columns(correct=(pl.col("answer") == pl.col("reference")).fill_null(False))
    )
    frame = frame.join(vote(frame, "correct", "_top2", "_share2", "_h2"), on="id", how="left", maintain_order="left")
    frame = frame.with_columns(vote_answer=pl.when("correct").then("_top2"),
                               vote_share=pl.when("correct").then("_share2"))
    frame = frame.with_columns(_r3=(pl.col("answer") == pl.col("vote_answer")).fill_null(False))
    frame = frame.join(vote(frame, "_r3", "_top3", "_share3", "_h3"), on="id", how="left", maintain_order="left")
    frame = frame.with_columns(
        answer_entropy=pl.when("_r3").then("_h3"),
        keep=pl.col("_r3") & ((pl.col("_h3") < THRESHOLD) & (pl.col("answer") == pl.col("_top3"))).fill_null(False),
        weight=pl.lit(1.0, pl.Float32),
    ).with_columns(
        dropped_by=pl.when(~pl.col("correct")).then(pl.lit("correctness"))
        .when(~pl.col("_r3")).then(pl.lit("majority_vote"))
        .when(~pl.col("keep")).then(pl.lit("entropy")),
    )
    result = frame.select(COLUMNS).collect()
    out.mkdir(parents=True, exist_ok=True)
    curated = result.filter("keep")
    curated.write_parquet(out / "curated.parquet", compression="zstd", compression_level=1)
    result.filter(~pl.col("keep")).write_parquet(out / "rejected.parquet", compression="zstd", compression_level=1)
    return curated.height


# -- HF datasets -------------------------------------------------------------


def run_datasets(path: Path, out: Path) -> int:
    """The chain with HF ``datasets`` (batched ``map``/``filter``, the task's per-row parser); writes the curated rows only."""
    import datasets

    from curator.plugins import get_registry

    datasets.disable_progress_bars()
    task = get_registry().task("gsm8k")
    ds = datasets.Dataset.from_parquet(str(path), cache_dir=str(out / "hf"))
    ds = ds.map(lambda b: {"answer": [task.extract(t) for t in b["rationale"]],
                           "reference": [task.normalize_reference(r) for r in b["reference"]]}, batched=True)
    ds = ds.map(lambda b: {"correct": [task.equal(a, r) for a, r in zip(b["answer"], b["reference"])]}, batched=True)
    ds = ds.filter(lambda b: b["correct"], batched=True)
    by_id: dict[str, Counter] = {}
    for batch in ds.select_columns(["id", "answer"]).iter(batch_size=65536):
        for i, a in zip(batch["id"], batch["answer"]):
            if a is not None:
                by_id.setdefault(i, Counter())[a] += 1
    vote = {i: c.most_common(1)[0][0] for i, c in by_id.items()}
    entropy = {i: -sum(n / sum(c.values()) * math.log(n / sum(c.values())) for n in c.values())
               for i, c in by_id.items()}
    ds = ds.map(lambda b: {"vote_answer": [vote.get(i) for i in b["id"]],
                           "answer_entropy": [entropy.get(i) for i in b["id"]]}, batched=True)
    ds = ds.filter(lambda b: [a == v for a, v in zip(b["answer"], b["vote_answer"])], batched=True)
    ds = ds.filter(lambda b: [h is not None and h < 0.7 for h in b["answer_entropy"]], batched=True)
    ds.to_parquet(str(out / "curated.parquet"))
    return ds.num_rows


# -- duckdb ------------------------------------------------------------------


def run_duckdb(path: Path, out: Path) -> int:
    """The chain in duckdb SQL (all cores); returns the rows kept."""
    import duckdb

    def token(texts: str, pattern: str) -> str:
        stripped = f"regexp_replace({texts}, '[$,]', '', 'g')"
        # Group 1 is the signed token, group 2 the unsigned; '' where a group took no part.
        groups = [f"nullif(regexp_extract({stripped}, '{pattern}', {g}), '')" for g in (1, 2)]
        return f"coalesce({groups[0]}, {groups[1]})"

    def canonical(tokens: str) -> str:
        digits = f"ltrim({tokens}, '-')"
        digits = f"(CASE WHEN contains({digits}, '.') THEN rtrim(rtrim({digits}, '0'), '.') ELSE {digits} END)"
        digits = f"ltrim({digits}, '0')"
        digits = f"(CASE WHEN starts_with({digits}, '.') THEN '0' || {digits} ELSE {digits} END)"
        return (f"(CASE WHEN {tokens} IS NULL THEN NULL WHEN {digits} = '' THEN '0' "
                f"WHEN starts_with({tokens}, '-') THEN '-' || {digits} ELSE {digits} END)")

    def after_last(texts: str, markers: str) -> str:
        marked = f"regexp_replace({texts}, '{markers}', chr(1), 'g')"
        return f"(CASE WHEN contains({marked}, chr(1)) THEN regexp_extract({marked}, '\\x01([^\\x01]*)$', 1) END)"

    def answer(texts: str) -> str:
        tail = after_last(texts, MARKERS)
        return canonical(f"(CASE WHEN {tail} IS NOT NULL THEN {token(tail, FIRST_TOKEN)} "
                         f"ELSE {token(texts, LAST_TOKEN)} END)")

    def vote(table: str, reach: str) -> str:
        """Per id among reaching rows: the top answer (first seen wins a tie), its share, the entropy."""
        return f"""(
            SELECT id, arg_min(answer, [-n, first]) AS top, max(n) / sum(n) AS share,
                   -sum(n / total * ln(n / total)) AS entropy
            FROM (SELECT id, answer, count(*) AS n, min(_i) AS first, sum(count(*)) OVER (PARTITION BY id) AS total
                  FROM {table} WHERE {reach} AND answer IS NOT NULL GROUP BY id, answer)
            GROUP BY id)"""

    ref_tail = after_last("reference", "####")
    con = duckdb.connect()
    con.execute(f"""CREATE TEMP TABLE t AS SELECT *, coalesce(answer = reference, false) AS correct FROM (
        SELECT id, question, rationale, {answer('rationale')} AS answer,
               coalesce({canonical(token(ref_tail, FIRST_TOKEN))}, {answer('reference')}) AS reference,
               sample, file_row_number AS _i
        FROM read_parquet('{path}', file_row_number = true))""")
    # The votes on a narrow table: the text columns are joined back only when written.
    con.execute(f"""CREATE TEMP TABLE s AS
        SELECT _i, id, answer, correct, v.top AS vote_answer, v.share AS vote_share,
               correct AND coalesce(answer = v.top, false) AS r3
        FROM (SELECT _i, id, answer, correct FROM t) LEFT JOIN {vote('t', 'correct')} v USING (id)""")
    con.execute(f"""CREATE TEMP TABLE r AS
        SELECT _i, CASE WHEN correct THEN vote_answer END AS vote_answer,
               CASE WHEN correct THEN vote_share END AS vote_share,
               CASE WHEN r3 THEN v.entropy END AS answer_entropy,
               r3 AND coalesce(v.entropy < {THRESHOLD} AND answer = v.top, false) AS keep,
               CASE WHEN NOT correct THEN 'correctness' WHEN NOT r3 THEN 'majority_vote'
                    WHEN NOT (r3 AND coalesce(v.entropy < {THRESHOLD} AND answer = v.top, false)) THEN 'entropy'
               END AS dropped_by
        FROM s LEFT JOIN {vote('s', 'r3')} v USING (id)""")
    out.mkdir(parents=True, exist_ok=True)
    for name, where in (("curated", "keep"), ("rejected", "NOT keep")):
        con.execute(f"""COPY (SELECT id, question, rationale, answer, reference, sample, correct, vote_answer,
                                     vote_share, answer_entropy, keep, 1.0::FLOAT AS weight, dropped_by
                              FROM t JOIN r USING (_i) WHERE {where} ORDER BY _i)
                        TO '{out / name}.parquet' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)""")
    kept = con.execute("SELECT count(*) FROM r WHERE keep").fetchone()
    con.close()
    return int(kept[0]) if kept else 0
