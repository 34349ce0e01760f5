"""The one parameter model of a build: everything `build-geopixeld` needs, validated before any work starts.

Defaults read demo/data with the offline template drafter; only `source.synthetic` (set by `geopixeld demo`,
`make demo` and the served demo, `DEMO`) generates the synthetic demo set, and only into a folder that does not
exist yet, so a misspelt root fails instead of building demo data. The sections reuse the planning config
(`pipeline.contracts.config`), so docs/config.md documents them too.
"""

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.contracts.config import MAX_WORKERS, OutputConfig, PlanConfig, PlanRules, SourceConfig
from pipeline.contracts.layout import check_split
from pipeline.drafting.lmm_drafter import LMM_BOUNDS
from pipeline.release.dataset import DatasetSettings
from pipeline.verification.stage import VerificationConfig, drafting_screen

TIERS = ("holistic", "instance", "group", "merge")


class BuildSource(SourceConfig):
    """The input, for every split (`split` is taken from `splits`; `{split}` in paths is replaced by the split's
    source folder, `split_folders`' entry for it)."""

    root: Path = Field(Path("demo/data"), description="Dataset root (relative paths are taken from the serving process's folder).")
    synthetic: Literal["tiny", "small"] | None = Field(
        None, description="Generate the synthetic demo set at this scale into the root when the root does not exist "
        "yet (never into an existing folder of other data); the build, its summary and its card are then marked "
        "synthetic. null (default): real data, a missing root is an error.")


# the demo build's parameters (over the defaults): the served `build-geopixeld/demo` deployment
DEMO = {"source": {"synthetic": "small"}}


class BuildOutput(OutputConfig):
    out: Path = Field(Path("demo/build"), description="Output root: <out>/<split>/{plans,records}, <out>/dataset.")


class Endpoints(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    urls: list[str] = Field(min_length=1, description="Server base URLs (http://host:port), load spread across them.")
    model: str = Field(min_length=1, description="The served model name (vllm serve --served-model-name).")

    @field_validator("urls")
    @classmethod
    def _http(cls, urls: list[str]) -> list[str]:
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"{u!r} is not an http(s) URL")
        return urls


class LMMParams(BaseModel):
    """Where the LMM runs and how it samples. Absent: the offline template drafter."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    endpoints: Endpoints = Field(description="Default servers of every tier.")
    merge: Endpoints | None = Field(None, description="Servers of the merge (the paper merged with a text-only LLM).")
    tiers: dict[Literal["holistic", "instance", "group", "merge", "judge"], Endpoints] = Field(
        default_factory=dict, description="Per-tier servers that override the above (judge: the LMM judge's, "
        "by default the instance tier's).")
    api_key_env: str = Field("GEOPIXELD_VLLM_API_KEY", description="Environment variable holding the API key (never logged).")
    instance_mode: Literal["per-object", "per-patch"] = Field("per-object", description="One request per marked object "
                                                              "(the paper) or one per patch.")
    family: Literal["qwen2.5-vl", "internvl3", "gemma3"] = Field(
        "qwen2.5-vl", description="The annotator's family, for the cost estimate the flow reports before drafting "
        "(its image-token formula; docs/lmm.md).")
    # the bounds are LMMSettings' own (pipeline.drafting.lmm_drafter.LMM_BOUNDS), so both entry points agree
    temperature: float = Field(0.2, **LMM_BOUNDS["temperature"], description="Sampling temperature.")
    seed: int = Field(0, **LMM_BOUNDS["seed"], description="Sampling seed (retries add to it).")
    invalid_retries: int = Field(2, **LMM_BOUNDS["invalid_retries"],
                                 description="Extra tries with another seed when a reply fails validation.")
    max_in_flight: int | None = Field(None, **LMM_BOUNDS["max_in_flight"], description="A cap on the requests in "
                                      "flight at once to each pool of servers (null: `in_flight_per_endpoint` a server).")
    in_flight_per_endpoint: int = Field(512, **LMM_BOUNDS["in_flight_per_endpoint"], description="Requests in flight a "
                                        "server: twice its `vllm serve --max-num-seqs` (256 by default), so its batch "
                                        "stays full.")
    timeout: float = Field(120.0, **LMM_BOUNDS["timeout"], description="Seconds per request.")
    prompts_dir: Path | None = Field(None, description="Folder of prompt templates overriding the bundled ones.")
    schema_probe: bool = Field(True, description="Before drafting, prove each server enforces response_format (one "
                               "request each); a server that ignores it stops the build, named.")

    def settings(self, screen=None, screen_id: str | None = None, judge: bool = False):
        """The drafting stage's LMMSettings (`screen`: the verification's, under the drop policy)."""
        from pipeline.drafting.lmm_client import Endpoint
        from pipeline.drafting.lmm_drafter import LMMSettings

        def eps(e: Endpoints | None):
            return [Endpoint(u, e.model, self.api_key_env) for u in e.urls] if e else None

        return LMMSettings(eps(self.endpoints), merge_endpoints=eps(self.merge),
                           tier_endpoints={t: eps(e) for t, e in self.tiers.items()}, instance_mode=self.instance_mode,
                           temperature=self.temperature, seed=self.seed, invalid_retries=self.invalid_retries,
                           max_in_flight=self.max_in_flight, in_flight_per_endpoint=self.in_flight_per_endpoint,
                           timeout=self.timeout, prompts_dir=self.prompts_dir,
                           screen=screen, screen_id=screen_id, probe_schema=self.schema_probe, judge=judge)


class TaskRunnerParams(BaseModel):
    """Where the CPU stages (tiling and planning, template drafting) run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["local", "dask"] = Field("local", description="local: processes of this machine; dask: a "
                                            "distributed cluster (prefect-dask).")
    address: str | None = Field(None, description="dask: scheduler address (tcp://host:8786) of an existing cluster; "
                                                  "none starts a LocalCluster on this machine.")
    dask_workers: int = Field(2, ge=1, le=MAX_WORKERS, description="dask without address: LocalCluster worker processes.")


class BuildParams(PlanRules):
    """Parameters of one `build-geopixeld` run: the planning rules (tiling, clip, filters, tiers, priors, marks)
    and the rest of the build."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: BuildSource = BuildSource()
    splits: list[str] = Field(["train", "test"], min_length=1, description="Splits to build, in order, by their "
                              "released names (GeoPixelD: train and test; `source.split_folders` maps test to iSAID's val).")
    output: BuildOutput = BuildOutput()
    lmm: LMMParams | None = Field(None, description="LMM servers; none: the offline template drafter.")
    verification: VerificationConfig = Field(VerificationConfig(), description="How drafted texts are checked "
                                             "against their plans (docs/verification.md).")
    dataset: DatasetSettings = DatasetSettings()
    workers: int = Field(0, ge=0, le=MAX_WORKERS, description="Worker processes of the CPU stages (0: one per core).")
    batch_shards: int = Field(2, ge=1, le=10_000, description="Shards per task run: each task run costs the Prefect server "
                                                   "about 70 ms of CPU, so tasks take batches, never single objects.")
    task_runner: TaskRunnerParams = TaskRunnerParams()
    strict: bool = Field(False, description="Stop at the first bad input record instead of quarantining it.")
    overwrite: bool = Field(False, description="Replace plans made with another config in the output folder.")
    progress: bool = Field(True, description="Terminal progress bars (in-process runs).")

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"splits repeat: {v}")
        for s in v:
            check_split(s)  # a folder under the source root and under OUT: `../x` would write outside OUT
        return v

    @model_validator(mode="after")
    def _source(self):
        self.plan_config(self.splits[0])  # the planning config of each split must validate too
        if self.verification.judge and self.lmm is None:
            raise ValueError("verification.judge asks an LMM about every sentence: it needs `lmm` (the servers)")
        return self

    def plan_config(self, split: str) -> PlanConfig:
        src = self.source.model_dump(exclude={"synthetic", "split"})
        folder = self.source.split_folders.get(split, split)
        for key in ("annotations", "images"):
            if src.get(key) is not None:  # `{split}` names the split's folder in the source (val for test)
                src[key] = Path(str(src[key]).replace("{split}", folder))
        rules = {name: getattr(self, name) for name in PlanRules.model_fields}
        return PlanConfig(source=SourceConfig(**src, split=split), output=OutputConfig(**self.output.model_dump()),
                          strict=self.strict, workers=self.workers, **rules)

    def synthetic(self) -> bool:
        """Whether this build reads synthetic data: it asked for the demo set, or its root is one geopixeld
        generated (`pipeline.synthetic.isaid` marks those), even with `synthetic: null`."""
        from pipeline.synthetic.isaid import is_synthetic_root

        return self.source.synthetic is not None or is_synthetic_root(self.source.root)

    def release_settings(self) -> DatasetSettings:
        """The dataset stage's settings, marked synthetic when the source is (the card and manifest say so).
        Asked after ingest, once a generated root carries its mark."""
        return self.dataset.model_copy(update={"synthetic": self.dataset.synthetic or self.synthetic()})

    def lmm_settings(self):
        """The drafting stage's LMMSettings (None: the template drafter); under the `drop` verification policy a
        tier text that fails a check is asked once more with new seeds before it is dropped."""
        if self.lmm is None:
            return None
        return self.lmm.settings(*drafting_screen(self.verification),
                                 judge=self.verification.enabled and self.verification.judge)

    def cpu_workers(self) -> int:
        return self.workers or os.cpu_count() or 1
