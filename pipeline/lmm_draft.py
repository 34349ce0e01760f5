"""LMM drafting of one planned patch: holistic, instance, group and merge requests, validated and grounded.

Requests put what repeats first (the image, then the shared instructions, then the object-specific part) so
that vLLM's prefix cache is used. A reply that fails validation is retried with another seed, then recorded
as a failure with its raw text; an instance or group that never got a valid sentence is listed as dropped;
a merge that loses, invents or repeats a tag is retried, then replaced by the deterministic assembly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from annotations.lmm_requests import (Ask, assembled, group_ask, holistic_ask, instance_ask, instance_batch_ask,
                                      merge_ask)
import prompts

from .gcg_schema import new_record, tier_texts
from .grounding import ground, targets_of
from .lmm_cache import ReplyCache, request_key
from .lmm_client import Endpoint, LMMClient, LMMRequestError
from .records import PatchPlan
from .replies import ReplyInvalid, parse_reply, response_format

DRAFTER_VERSION = "1"


@dataclass
class LMMSettings:
    endpoints: list[Endpoint]  # the default pool of every tier
    merge_endpoints: list[Endpoint] | None = None  # the paper merged with a text-only LLM; default: `endpoints`
    tier_endpoints: dict[str, list[Endpoint]] = field(default_factory=dict)  # holistic/instance/group/merge overrides
    instance_mode: str = "per-object"  # or "per-patch": one request describes all marked objects
    temperature: float = 0.2
    seed: int = 0
    invalid_retries: int = 2  # extra tries with another seed when a reply fails validation
    max_in_flight: int = 16
    timeout: float = 120.0
    prompts_dir: Path | None = None

    def sampling(self) -> dict:
        return {"temperature": self.temperature, "seed": self.seed, "instance_mode": self.instance_mode,
                "invalid_retries": self.invalid_retries}

    def pool(self, tier: str) -> list[Endpoint]:
        """The endpoints a tier's requests go to."""
        if tier in self.tier_endpoints:
            return self.tier_endpoints[tier]
        if tier == "merge" and self.merge_endpoints:
            return self.merge_endpoints
        return self.endpoints


@dataclass
class Drafting:
    """Shared state of a drafting run: clients, cache, templates and request counters."""

    settings: LMMSettings
    cache: ReplyCache
    clients: dict[str, LMMClient] = field(init=False)  # tier -> client; tiers with the same pool share one
    templates: dict = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None  # the run's event loop (set by the caller)
    tokens: dict = field(default_factory=lambda: {"prompt": 0, "completion": 0})  # of requests actually sent

    def __post_init__(self):
        s = self.settings
        unknown = set(s.tier_endpoints) - {"holistic", "instance", "group", "merge"}
        if unknown:
            raise ValueError(f"unknown tier(s) {sorted(unknown)} in tier_endpoints; tiers: holistic, instance, group, merge")
        shared: dict[tuple, LMMClient] = {}
        self.clients = {}
        for tier in ("holistic", "instance", "group", "merge"):
            key = tuple(s.pool(tier))
            if key not in shared:
                shared[key] = LMMClient(list(key), s.max_in_flight, s.timeout)
            self.clients[tier] = shared[key]
        self.templates = {n: prompts.load(n, s.prompts_dir) for n in prompts.NAMES}

    def distinct_clients(self) -> list[LMMClient]:
        return list({id(c): c for c in self.clients.values()}.values())

    async def aclose(self):
        for c in self.distinct_clients():
            await c.aclose()

    async def ask(self, ask: Ask, images: dict[str, str]) -> dict:
        """A validated reply for one request (cache first), or ReplyInvalid after the retries."""
        client = self.clients[ask.tier]
        content = ([{"type": "image_url", "image_url": {"url": images[ask.image]}}] if ask.image else [])
        messages = [{"role": "user", "content": content + [{"type": "text", "text": ask.prompt}]}]
        last: ReplyInvalid | None = None
        for attempt in range(self.settings.invalid_retries + 1):
            sampling = {"max_tokens": ask.max_tokens, "temperature": self.settings.temperature,
                        "seed": self.settings.seed + attempt}
            fmt = response_format(f"{ask.tier}_reply", ask.schema)
            key = request_key({"model": client.endpoints[0].model, "messages": messages, "response_format": fmt, **sampling})
            hit = self.cache.get(key)
            if hit is None:
                reply = await client.chat(messages, fmt, **sampling)
                hit = (reply.text, reply.finish_reason, reply.usage)
                self.tokens["prompt"] += reply.usage.get("prompt_tokens", 0)
                self.tokens["completion"] += reply.usage.get("completion_tokens", 0)
                self.cache.put(key, *hit)
            try:
                return parse_reply(hit[0], ask.schema, hit[1])
            except ReplyInvalid as exc:
                last = exc
        raise last


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


async def draft_patch(plan: PatchPlan, split_dir: Path, d: Drafting) -> dict:
    """One GCG record (dict in GCG_SCHEMA layout) for one plan."""
    s, t = d.settings, d.templates
    images = {"patch": _data_url(split_dir / plan.image_path)}
    if plan.som_path:
        images["som"] = _data_url(split_dir / plan.som_path)
    failures: list[dict] = []

    async def safe(ask: Ask):
        try:
            return await d.ask(ask, images)
        except ReplyInvalid as exc:
            failures.append({"tier": ask.tier, "tag": ask.key, "reason": str(exc), "raw": exc.raw[:2000]})
        except LMMRequestError as exc:
            failures.append({"tier": ask.tier, "tag": ask.key, "reason": str(exc), "raw": ""})
        return None

    instances = sorted(plan.instances, key=lambda o: o.mark)
    if s.instance_mode == "per-patch" and instances:
        inst_coros = [safe(instance_batch_ask(instances, t["instance_batch"]))]
    else:
        inst_coros = [safe(instance_ask(o, t["instance"])) for o in instances]
    results = await _all([safe(holistic_ask(t["holistic"])), *inst_coros,
                          *[safe(group_ask(g, t["group"])) for g in plan.groups]])
    hol, inst_res, grp_res = results[0], results[1 : 1 + len(inst_coros)], results[1 + len(inst_coros) :]
    inst_text: dict[str, str] = {}
    if s.instance_mode == "per-patch" and instances:
        by_mark = {o.mark: o.tag for o in instances}
        for item in (inst_res[0] or {}).get("objects", []):
            inst_text.setdefault(by_mark[item["mark"]], item["sentence"])
    else:
        inst_text = {o.tag: r["sentence"] for o, r in zip(instances, inst_res) if r}
    grp_text = {g.tag: r["sentence"] for g, r in zip(plan.groups, grp_res) if r}
    dropped = [{"tag": o.tag, "reason": "no valid instance sentence"} for o in instances if o.tag not in inst_text]
    dropped += [{"tag": g.tag, "reason": "no valid group sentence"} for g in plan.groups if g.tag not in grp_text]

    record = _record(plan, s, d, inst_text, grp_text, dropped, failures)
    if hol is None:
        record.update(status="failed", error="no valid holistic description")
        return record
    record["holistic"] = hol["description"]
    tagged = [(tag, inst_text[tag]) for tag in [o.tag for o in instances] if tag in inst_text]
    tagged += [(g.tag, grp_text[g.tag]) for g in plan.groups if g.tag in grp_text]
    keep = {tag for tag, _ in tagged}
    targets = {k: v for k, v in targets_of(plan).items() if k in keep}
    description, merge = None, "assembly"
    if tagged:
        for _ in range(s.invalid_retries + 1):
            got = await safe(merge_ask(hol["description"], tagged, t["merge"]))
            if got is None:
                break
            text = _with_seg(got["description"])
            g = ground(text, targets)
            if g.ok and not g.missing:
                description, merge = text, "lmm"
                break
            failures.append({"tier": "merge", "tag": "", "raw": got["description"][:2000],
                             "reason": "; ".join(g.errors + [f"lost tag {m!r}" for m in g.missing])})
    if description is None:
        description = assembled(hol["description"], tagged)
    g = ground(description, targets)
    if not g.ok or g.missing:  # the assembly always grounds; this guards the invariant, never keeps a bad record
        record.update(status="failed", error="; ".join(g.errors + g.missing))
        return record
    record.update(description=description, phrases=[p.__dict__ for p in g.phrases], status="ok")
    record["provenance"]["sampling"] = json.dumps({**s.sampling(), "merge": merge})
    return record


def _with_seg(text: str) -> str:
    """`<p> tag </p>` -> `<p> tag </p> [SEG]` where the model left out the token (the prompt asks for tags only)."""
    return re.sub(r"</p>(?!\s*\[SEG\])", "</p> [SEG]", text)


def _record(plan, s: LMMSettings, d: Drafting, inst_text, grp_text, dropped, failures) -> dict:
    models = sorted({e.model for tier in ("holistic", "instance", "group", "merge") for e in s.pool(tier)})
    return new_record(
        plan,
        {"drafter": "lmm", "drafter_version": DRAFTER_VERSION, "model": ",".join(models),
         "sampling": json.dumps(s.sampling()),
         "prompt_hashes": [{"tag": n, "text": tpl.sha256} for n, tpl in d.templates.items()]},
        instance_texts=tier_texts(inst_text), group_texts=tier_texts(grp_text), dropped=dropped, failures=failures,
    )


async def draft_plans(plans: list[PatchPlan], split_dir: Path, d: Drafting) -> list[dict]:
    """Draft many patches concurrently (the client bounds requests in flight).

    An unreachable server (LMMUnavailable after the retries) stops the shard: the other requests are
    cancelled, nothing of the shard is written, and the error names the endpoints and what was tried.
    """
    return await _all([draft_patch(p, split_dir, d) for p in plans])


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
