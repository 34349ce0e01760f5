"""LMM drafting of one planned patch: holistic, instance, group and merge requests, validated and grounded.

Requests put what repeats first (the image, then the shared instructions, then the object-specific part) so
that vLLM's prefix cache is used. A reply that fails validation is retried with another seed, then recorded
as a failure with its raw text; an instance or group that never got a valid sentence is listed as dropped;
a merge that loses, invents or repeats a tag is retried (with new seeds, so the retry is a new request), then
replaced by the deterministic assembly. Every record keeps the rendered prompt of each request it came from
and the SHA-256 of that request (the reply cache's key), next to the model and sampling settings.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from annotations.ask import Ask
from annotations.group import group_ask
from annotations.holistic import holistic_ask
from annotations.instance import instance_ask, instance_batch_ask
from annotations.judge import crop_box, crop_image, judge_group_ask, judge_instance_ask
from annotations.merge import assembled, merge_ask
import prompts

from pipeline.contracts.gcg_schema import Check, Dropped, Failure, GCGRecord, Prompt, Provenance, TaggedText, tagged_texts
from pipeline.contracts.grounding import ground, targets_of
from pipeline.drafting.reply_cache import ReplyCache, request_key
from pipeline.drafting.lmm_client import Endpoint, LMMClient, LMMRequestError
from pipeline.contracts.records import PatchPlan
from pipeline.drafting.replay import REPLAY_VERSION, Replies, check_tags
from pipeline.drafting.reply_validation import ReplyInvalid, parse_reply, response_format

DRAFTER_VERSION = "2"  # 2: prompts kept in the provenance; merge retries are new requests
TIERS = ("holistic", "instance", "group", "merge", "judge")  # the pools of requests (judge: only when asked for)


# the range of each numeric setting (pydantic Field keywords; flows.params.LMMParams uses them too): a NaN or
# infinite timeout, a negative retry count or a huge concurrency would hang or overload rather than fail
LMM_BOUNDS = {
    "temperature": {"ge": 0, "le": 2},
    "seed": {"ge": 0, "le": 2**31 - 1},
    "invalid_retries": {"ge": 0, "le": 10},
    "max_in_flight": {"ge": 1, "le": 4096},
    "in_flight_per_endpoint": {"ge": 1, "le": 4096},
    "timeout": {"gt": 0, "le": 3600},
}
# vLLM batches up to --max-num-seqs sequences (256 by default): fewer requests in flight leave a GPU server idle,
# and exactly that many leave it one short after each reply and in the merges' tails (docs/benchmarks.md): twice it
IN_FLIGHT_PER_ENDPOINT = 512


def _check_bounds(settings) -> None:
    """Refuse a numeric setting outside LMM_BOUNDS (NaN and infinities included), naming it."""
    for name, b in LMM_BOUNDS.items():
        v = getattr(settings, name)
        if v is None and name == "max_in_flight":  # sized from the endpoints
            continue
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and v >= b.get("ge", v) and v <= b["le"] and ("gt" not in b or v > b["gt"]))
        if not ok:
            lo = f"[{b['ge']}" if "ge" in b else f"({b['gt']}"
            raise ValueError(f"LMM setting {name}={v!r} is outside {lo}, {b['le']}]")


@dataclass
class LMMSettings:
    endpoints: list[Endpoint]  # the default pool of every tier
    merge_endpoints: list[Endpoint] | None = None  # the paper merged with a text-only LLM; default: `endpoints`
    tier_endpoints: dict[str, list[Endpoint]] = field(default_factory=dict)  # holistic/instance/group/merge overrides
    instance_mode: str = "per-object"  # or "per-patch": one request describes all marked objects
    temperature: float = 0.2
    seed: int = 0
    invalid_retries: int = 2  # extra tries with another seed when a reply fails validation
    max_in_flight: int | None = None  # a cap on each pool's requests in flight; None: in_flight_per_endpoint each
    in_flight_per_endpoint: int = IN_FLIGHT_PER_ENDPOINT  # twice the servers' --max-num-seqs
    timeout: float = 120.0
    prompts_dir: Path | None = None
    # (plan, tier, tag, text) -> the names of the checks a tier text fails (pipeline.verification builds it for
    # the `drop` policy); a failing instance or group text is asked once more with new seeds, then dropped
    screen: Callable[[PatchPlan, str, str, str], list[str]] | None = None
    screen_id: str | None = None  # what the screen is (the verification settings' fingerprint), for the signature
    probe_schema: bool = True  # prove each endpoint enforces response_format before drafting (schema_probe.py)
    judge: bool = False  # one yes/no request per kept instance or group sentence (annotations/judge.py)

    def __post_init__(self):
        _check_bounds(self)

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "seed": self.seed, "instance_mode": self.instance_mode,
                "invalid_retries": self.invalid_retries, **({"screen": self.screen_id} if self.screen else {}),
                **({"judge": True} if self.judge else {})}

    def in_flight(self, pool) -> int:
        """Requests a pool of endpoints gets at once: `max_in_flight`, else enough to fill each server's batch."""
        return self.max_in_flight or self.in_flight_per_endpoint * max(1, len(pool))

    def tiers(self) -> tuple[str, ...]:
        """The pools this run sends requests to: the judge's only when it judges."""
        return TIERS if self.judge else TIERS[:-1]

    def pool(self, tier: str) -> list[Endpoint]:
        """The endpoints a tier's requests go to."""
        if tier in self.tier_endpoints:
            return self.tier_endpoints[tier]
        if tier == "judge" and "instance" in self.tier_endpoints:  # it looks at the images the annotator saw
            return self.tier_endpoints["instance"]
        if tier == "merge" and self.merge_endpoints:
            return self.merge_endpoints
        return self.endpoints


class PriorityGate:
    """At most `size` holders at once; waiters are let in lowest priority first, then in arrival order.

    Drafting admits requests by the patch they belong to (earlier patches first), so a patch's merge, which
    waits for its tier texts, goes ahead of later patches' first requests: patches finish one after another and
    the server stays busy to the end, instead of every merge (and merge retry) queueing behind the whole shard
    and running in a thin tail.
    """

    def __init__(self, size: int):
        self._free = size
        self._waiters: list[tuple[tuple, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: tuple) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # let in, then cancelled before it ran: pass the slot on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():  # a cancelled waiter's future is done: skip it
                fut.set_result(None)
                return
        self._free += 1

    @asynccontextmanager
    async def slot(self, priority: tuple):
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


@dataclass
class Drafting:
    """Shared state of a drafting run: clients, cache, templates and request counters."""

    settings: LMMSettings
    cache: ReplyCache
    clients: dict[str, LMMClient] = field(init=False)  # tier -> client; tiers with the same pool share one
    templates: dict = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None  # the run's event loop (set by the caller)
    tokens: dict = field(default_factory=lambda: {"prompt": 0, "completion": 0})  # of requests actually sent
    judged: Counter = field(default_factory=Counter)  # the judge's requests, tokens and verdicts (its cost)
    on_sent: Callable[[dict], None] | None = None  # sees every request actually sent, with its reply (benchmarks)
    gates: dict[int, PriorityGate] = field(init=False)  # id(client) -> the order its requests are sent in
    patch_numbers: itertools.count = field(init=False)  # draft_patch's order: its requests' priority
    replies: Replies | None = None  # the replay drafter: every request answered from a replies file, none sent

    def __post_init__(self):
        s = self.settings
        self.templates = {n: prompts.load(n, s.prompts_dir) for n in prompts.NAMES}
        self.patch_numbers = itertools.count()
        if self.replies is not None:
            self.clients, self.gates = {}, {}
            return
        unknown = set(s.tier_endpoints) - set(TIERS)
        if unknown:
            raise ValueError(f"unknown tier(s) {sorted(unknown)} in tier_endpoints; tiers: {', '.join(TIERS)}")
        shared: dict[tuple, LMMClient] = {}
        self.clients = {}
        for tier in s.tiers():
            key = tuple(s.pool(tier))
            if key not in shared:
                shared[key] = LMMClient(list(key), s.in_flight(key), s.timeout)
            self.clients[tier] = shared[key]
        self.gates = {id(c): PriorityGate(s.in_flight(c.endpoints)) for c in shared.values()}

    def distinct_clients(self) -> list[LMMClient]:
        return list({id(c): c for c in self.clients.values()}.values())

    async def aclose(self):
        for c in self.distinct_clients():
            await c.aclose()

    async def ask(self, ask: Ask, images: dict[str, str], prompts: list[Prompt] | None = None, round_: int = 0,
                  priority: tuple = (), patch_id: str = "") -> dict:
        """A validated reply for one request (cache first), or ReplyInvalid after the retries.

        `round_` > 0 asks again with seeds no earlier round used (a merge retried after it failed grounding
        would otherwise be the same request, answered by the cache). `prompts` gets the request's provenance:
        tier, tag, the rendered prompt and the SHA-256 of the last request made (the cache key). Requests with
        a lower `priority` are sent first (PriorityGate).
        """
        if self.replies is not None:  # one answer per request, validated as a served reply would be
            text = self.replies.reply(patch_id, ask.tier, ask.key)
            if text is None:
                raise ReplyInvalid(f"no {ask.tier} line{f' for {ask.key!r}' if ask.key else ''} in {self.replies.path}", "")
            return parse_reply(text, ask.schema)
        client = self.clients[ask.tier]
        content = ([{"type": "image_url", "image_url": {"url": images[ask.image]}}] if ask.image else [])
        messages = [{"role": "user", "content": content + [{"type": "text", "text": ask.prompt}]}]
        tries = self.settings.invalid_retries + 1
        last: ReplyInvalid | None = None
        for attempt in range(tries):
            sampling = {"max_tokens": ask.max_tokens, "temperature": self.settings.temperature,
                        "seed": self.settings.seed + round_ * tries + attempt}
            fmt = response_format(f"{ask.tier}_reply", ask.schema)
            key = request_key({"model": client.endpoints[0].model, "messages": messages, "response_format": fmt, **sampling})
            if prompts is not None:
                if attempt:
                    prompts.pop()
                prompts.append(Prompt(ask.tier, ask.key, ask.prompt, key))
            hit = self.cache.get(key)
            if hit is None:
                async with self.gates[id(client)].slot(priority):
                    issued_at = time.perf_counter()
                    reply = await client.chat(messages, fmt, **sampling)
                hit = (reply.text, reply.finish_reason, reply.usage)
                self.tokens["prompt"] += reply.usage.get("prompt_tokens", 0)
                self.tokens["completion"] += reply.usage.get("completion_tokens", 0)
                if ask.tier == "judge":
                    self.judged.update(requests=1, prompt_tokens=reply.usage.get("prompt_tokens", 0),
                                       completion_tokens=reply.usage.get("completion_tokens", 0))
                self.cache.put(key, *hit)
                if self.on_sent is not None:
                    self.on_sent({"tier": ask.tier, "messages": messages, "response_format": fmt, **sampling,
                                  "usage": reply.usage, "seconds": reply.seconds, "issued_at": issued_at})
            try:
                return parse_reply(hit[0], ask.schema, hit[1])
            except ReplyInvalid as exc:
                last = exc
        raise last


def used_templates(d: Drafting) -> dict:
    """The prompt templates a run's requests are made from (the judge's only when it judges): its provenance and
    resume signature name them."""
    return {n: t for n, t in d.templates.items() if d.settings.judge or n not in prompts.JUDGE}


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def tier_asks(plan: PatchPlan, t: dict, instance_mode: str) -> tuple[Ask, list[Ask], list[Ask]]:
    """A plan's holistic, instance and group requests, in the order they are made (the drafter and the cost
    estimate ask here): one instance request per marked object, or one for all of them (`per-patch`)."""
    instances = sorted(plan.instances, key=lambda o: o.mark)
    if instance_mode == "per-patch" and instances:
        inst = [instance_batch_ask(instances, t["instance_batch"])]
    else:
        inst = [instance_ask(o, t["instance"]) for o in instances]
    return holistic_ask(t["holistic"]), inst, [group_ask(g, t["group"]) for g in plan.groups]


async def draft_patch(plan: PatchPlan, split_dir: Path, d: Drafting) -> GCGRecord:
    """One GCG record for one plan."""
    s, t = d.settings, d.templates
    priority = (next(d.patch_numbers),)  # this patch's requests go before those of patches started after it
    images = {}
    if d.replies is None:  # a replay sends no request: no image to read
        images["patch"] = _data_url(split_dir / plan.image_path)
        if plan.som_path:
            images["som"] = _data_url(split_dir / plan.som_path)
    else:
        check_tags(d.replies, plan.patch_id, {"instance": {o.tag for o in plan.instances},
                                              "group": {g.tag for g in plan.groups}})
    failures: list[Failure] = []
    asked: list[list[Prompt]] = []  # each request's provenance, in the order the requests were made

    def safe(ask: Ask, round_: int = 0):
        mine: list[Prompt] = []
        asked.append(mine)

        async def go():
            try:
                return await d.ask(ask, images, mine, round_, priority, plan.patch_id)
            except ReplyInvalid as exc:
                failures.append(Failure(ask.tier, ask.key, str(exc), exc.raw[:2000]))
            except LMMRequestError as exc:
                failures.append(Failure(ask.tier, ask.key, str(exc), ""))
            return None
        return go()

    def done(record: GCGRecord, **fields) -> GCGRecord:
        record = replace(record, **fields)
        record.provenance.prompts = [p for mine in asked for p in mine]
        return record

    instances = sorted(plan.instances, key=lambda o: o.mark)
    mode = "per-object" if d.replies is not None else s.instance_mode  # a replay has a line per tag
    hol_ask, inst_asks, grp_asks = tier_asks(plan, t, mode)
    hol_coro = safe(hol_ask)  # requests are recorded (and sent) in this order
    inst_coros = [safe(a) for a in inst_asks]
    grp_coros = [safe(a) for a in grp_asks]
    results = await _all([hol_coro, *inst_coros, *grp_coros])
    hol, inst_res, grp_res = results[0], results[1 : 1 + len(inst_coros)], results[1 + len(inst_coros) :]
    inst_text: dict[str, str] = {}
    if mode == "per-patch" and instances:
        by_mark = {o.mark: o.tag for o in instances}
        for item in (inst_res[0] or {}).get("objects", []):
            inst_text.setdefault(by_mark[item["mark"]], item["sentence"])
    else:
        inst_text = {o.tag: r["sentence"] for o, r in zip(instances, inst_res) if r}
    grp_text = {g.tag: r["sentence"] for g, r in zip(plan.groups, grp_res) if r}
    dropped = [Dropped(o.tag, "no valid instance sentence") for o in instances if o.tag not in inst_text]
    dropped += [Dropped(g.tag, "no valid group sentence") for g in plan.groups if g.tag not in grp_text]
    if s.screen is not None and d.replies is None:  # the drop policy: a text with a wrong fact gets one more try
        dropped += await _redraft_failing(plan, instances, inst_text, grp_text, s.screen, safe, t)

    record = _record(plan, s, d, inst_text, grp_text, dropped, failures)
    if hol is None:
        return done(record, status="failed", error="no valid holistic description")
    record.holistic = hol["description"]
    tagged = [(tag, inst_text[tag]) for tag in [o.tag for o in instances] if tag in inst_text]
    tagged += [(g.tag, grp_text[g.tag]) for g in plan.groups if g.tag in grp_text]
    keep = {tag for tag, _ in tagged}
    targets = {k: v for k, v in targets_of(plan).items() if k in keep}
    description, merge = None, "assembly"
    replayed = d.replies is not None
    if tagged and (not replayed or d.replies.has(plan.patch_id, "merge")):  # no merge line: the assembly
        for round_ in range(1 if replayed else s.invalid_retries + 1):  # a replay has one answer
            got = await safe(merge_ask(hol["description"], tagged, t["merge"]), round_)
            if got is None:
                break
            text = _with_seg(got["description"])
            g = ground(text, targets)
            if g.ok and not g.missing:
                description, merge = text, "replay" if replayed else "lmm"
                break
            failures.append(Failure("merge", "", "; ".join(g.errors + [f"lost tag {m!r}" for m in g.missing]),
                                    got["description"][:2000]))
    if description is None:
        description = assembled(hol["description"], tagged)
    g = ground(description, targets)
    if not g.ok or g.missing:  # the assembly always grounds; this guards the invariant, never keeps a bad record
        return done(record, status="failed", error="; ".join(g.errors + g.missing))
    if replayed:
        record.provenance.sampling = json.dumps({**json.loads(d.replies.provenance()), "merge": merge}, sort_keys=True)
    else:
        record.provenance.sampling = json.dumps({**s.sampling(), "merge": merge})
    if s.judge and not replayed:
        record.checks = await _judge(plan, inst_text, grp_text, split_dir, images, safe, d)
    return done(record, description=description, phrases=g.phrases, status="ok")


async def _judge(plan: PatchPlan, inst_text: dict, grp_text: dict, split_dir: Path, images: dict, safe,
                 d: Drafting) -> list[Check]:
    """The LMM judge's verdict on every kept instance and group sentence: a "no" is the check `judge` of that text,
    with the judge's reason; a judge that gave no valid reply is recorded as a failure and judges nothing."""
    t = d.templates
    asks = [judge_instance_ask(o, inst_text[o.tag], t["judge_instance"])
            for o in sorted(plan.instances, key=lambda o: o.mark) if o.tag in inst_text]
    groups = [g for g in plan.groups if g.tag in grp_text]
    for g in groups:
        images[crop_image(g.tag)] = _crop_url(split_dir / plan.image_path, g.bbox)
    asks += [judge_group_ask(g, grp_text[g.tag], t["judge_group"]) for g in groups]
    tiers = {o.tag: "instance" for o in plan.instances} | {g.tag: "group" for g in groups}
    checks = []
    for ask, reply in zip(asks, await _all([safe(a) for a in asks])):
        if reply is not None:
            d.judged[f"verdict {reply['verdict']}"] += 1
            if reply["verdict"] == "no":
                checks.append(Check(tiers[ask.key], ask.key, "judge", reply["reason"]))
    return checks


def _crop_url(path: Path, bbox) -> str:
    """A PNG data URL of the patch cropped around a box (annotations.judge.crop_box)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise LMMRequestError(f"{path}: the patch image cannot be read for the judge's crop")
    x0, y0, x1, y1 = crop_box(bbox, img.shape[1], img.shape[0])
    ok, png = cv2.imencode(".png", img[y0:y1, x0:x1])
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()


async def _redraft_failing(plan: PatchPlan, instances, inst_text: dict, grp_text: dict, screen, safe, t) -> list[Dropped]:
    """Ask once more, with seeds no earlier try used, for every instance or group text the screen fails; keep a new
    text that passes, else leave the tag out (dropped, naming the checks). Updates the texts in place."""
    todo = [("instance", o, inst_text) for o in instances if o.tag in inst_text
            and screen(plan, "instance", o.tag, inst_text[o.tag])]
    todo += [("group", g, grp_text) for g in plan.groups if g.tag in grp_text and screen(plan, "group", g.tag, grp_text[g.tag])]
    if not todo:
        return []
    asks = [safe(instance_ask(x, t["instance"]) if tier == "instance" else group_ask(x, t["group"]), 1)
            for tier, x, _ in todo]
    dropped = []
    for (tier, x, texts), reply in zip(todo, await _all(asks)):
        failed = screen(plan, tier, x.tag, reply["sentence"]) if reply else ["no valid sentence on the re-draft"]
        if failed:
            del texts[x.tag]
            dropped.append(Dropped(x.tag, "verification: " + ", ".join(sorted(set(failed)))))
        else:
            texts[x.tag] = reply["sentence"]
    return dropped


def _with_seg(text: str) -> str:
    """`<p> tag </p>` -> `<p> tag </p> [SEG]` where the model left out the token (the prompt asks for tags only)."""
    return re.sub(r"</p>(?!\s*\[SEG\])", "</p> [SEG]", text)


def _record(plan, s: LMMSettings, d: Drafting, inst_text, grp_text, dropped, failures) -> GCGRecord:
    if d.replies is not None:  # provenance names the file and its sha256
        provenance = Provenance("replay", REPLAY_VERSION, None, d.replies.provenance())
    else:
        models = sorted({e.model for tier in s.tiers() for e in s.pool(tier)})
        provenance = Provenance("lmm", DRAFTER_VERSION, ",".join(models), json.dumps(s.sampling()),
                                [TaggedText(n, tpl.sha256) for n, tpl in used_templates(d).items()])
    return GCGRecord.for_plan(
        plan,
        provenance,
        instance_texts=tagged_texts(inst_text), group_texts=tagged_texts(grp_text), dropped=dropped, failures=failures,
    )


async def draft_plans(plans: list[PatchPlan], split_dir: Path, d: Drafting) -> list[GCGRecord]:
    """Draft many patches concurrently (the client bounds requests in flight); records in the order of `plans`.

    Patches with the most instances and groups start first, and each patch's requests go before those of
    patches started after it (PriorityGate): a big patch's chain of requests (tier texts, then the merge and
    its retries) runs alongside the rest of the shard instead of being left over at its end, where the
    server would idle with few requests in flight.
    An unreachable server (LMMUnavailable after the retries) stops the shard: the other requests are
    cancelled, nothing of the shard is written, and the error names the endpoints and what was tried.
    """
    order = sorted(range(len(plans)), key=lambda i: -(len(plans[i].instances) + len(plans[i].groups)))
    drafted = await _all([draft_patch(plans[i], split_dir, d) for i in order])
    records: list[GCGRecord | None] = [None] * len(plans)
    for i, record in zip(order, drafted):
        records[i] = record
    return records


async def _all(coros: list) -> list:
    """Run coroutines together; the first error cancels the others and is raised as itself.

    (asyncio.gather would leave the others running after an error, still holding the client when the run's
    event loop closes.)
    """
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except* Exception as group:
        raise group.exceptions[0] from None
    return [t.result() for t in tasks]
