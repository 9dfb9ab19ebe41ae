"""The model registry as the API shows it: /v1/models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.api import UtcDatetime


class GuardRead(BaseModel):
    """Both adapters on a guard's calls: ground the candidate must not lose."""

    dataset: str = Field(description="The guard's labelled calls (path as given).")
    dataset_sha256: str = Field(description="The SHA-256 of the file.")
    taxonomy: str = Field(description="The list as given: a built-in name, a file, configured.")
    taxonomy_version: str = Field(description="The taxonomy they are labelled in.")
    calls: int = Field(description="Calls both adapters answered.")
    reason_accuracy: float = Field(description="The candidate's reason accuracy.")
    baseline_reason_accuracy: float = Field(description="The promoted adapter's.")
    points_lost: float = Field(description="Reason-accuracy points the candidate loses.")
    max_loss: float = Field(description="Points it may lose.")
    held: bool = Field(description="Whether it lost no more than that.")
    only_candidate_right: int = Field(description="Calls only the candidate got right.")
    only_baseline_right: int = Field(description="Calls only the promoted adapter got right.")
    p_value: float = Field(description="Exact McNemar test on the reason, paired by call.")


class EvaluationRead(BaseModel):
    """The candidate against the adapter promoted when it was measured, on the same calls."""

    id: int = Field(description="The evaluation's id.")
    baseline_id: int | None = Field(description="The adapter it was compared with.")
    dataset: str = Field(description="The labelled calls (path as given).")
    dataset_sha256: str = Field(description="The SHA-256 of the file: which calls exactly.")
    taxonomy_version: str = Field(description="The taxonomy the calls are labelled in.")
    calls: int = Field(description="Calls both adapters answered.")
    reason_accuracy: float = Field(description="The candidate's reason accuracy.")
    baseline_reason_accuracy: float | None = Field(description="The promoted adapter's.")
    product_rate: float | None = Field(description="The candidate's product match rate.")
    baseline_product_rate: float | None = Field(description="The promoted adapter's.")
    only_candidate_right: int | None = Field(description="Calls only the candidate got right.")
    only_baseline_right: int | None = Field(description="Calls only the baseline got right.")
    p_value: float | None = Field(description="Exact McNemar test on the reason, paired by call.")
    verdict: str = Field(
        description="passes; worse (lower reason accuracy); or forgets (a guard lost more "
        "points than it allows)."
    )
    guards: list[GuardRead] = Field(
        default_factory=list, description="The guards it was measured on, if any."
    )
    evaluated_by: str = Field(description="Who ran it (cli:USER).")
    created_at: UtcDatetime = Field(description="When.")


class AdapterRead(BaseModel):
    """A registered LoRA adapter."""

    id: int = Field(description="The adapter's id (callx models list).")
    name: str = Field(description="Its name, unique.")
    sha256: str = Field(description="The SHA-256 of its file: what each extraction records.")
    file_name: str = Field(description="Its file in the models directory (CALLX_MODELS_DIR).")
    size_bytes: int = Field(description="Its file's size.")
    base_model: str | None = Field(description="The base model it was trained for (its card).")
    registered_by: str = Field(description="Who registered it.")
    registered_at: UtcDatetime = Field(description="When.")
    promoted: bool = Field(
        description="The registry's promoted adapter: the one workers of the local backend run "
        "now, on every list without an adapter promoted for it alone."
    )
    promoted_for: list[str] = Field(
        default_factory=list,
        description="The taxonomy versions it is promoted for alone: workers of those lists "
        "run it.",
    )
    evaluation: EvaluationRead | None = Field(
        description="Its latest evaluation against the promoted adapter (null: none)."
    )


class AdapterList(BaseModel):
    """The registered adapters, the first registered first."""

    items: list[AdapterRead] = Field(description="Every registered adapter.")


class PromoteRequest(BaseModel):
    """What to do when the gate refuses, and why, for the record."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"force": False, "note": "March labels"}]}
    )

    force: bool = Field(
        default=False, description="Promote even where the gate refuses (recorded)."
    )
    note: str | None = Field(default=None, max_length=2000, description="Why, for the record.")
    for_taxonomy: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A taxonomy version: promote it for the workers of that list only, gated "
        "against the adapter they run on an evaluation on that list's calls (null: for every "
        "list without its own).",
    )


class RollbackRequest(BaseModel):
    """Which promotions to go back along."""

    model_config = ConfigDict(extra="forbid")

    for_taxonomy: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A taxonomy version: go back along that list's own promotions; past the "
        "first, the list runs the registry's promoted adapter again (null: the registry's).",
    )


class PromotionRead(BaseModel):
    """A change of the promoted adapter."""

    id: int = Field(description="The promotion's id.")
    adapter_id: int = Field(description="The adapter promoted.")
    previous_id: int | None = Field(description="The one promoted before it.")
    action: str = Field(
        description="initial, promote, rollback, or release (a list handed back to the "
        "registry's promoted adapter)."
    )
    taxonomy_version: str | None = Field(
        default=None, description="The list it is for alone (null: every list without its own)."
    )
    evaluation_id: int | None = Field(description="The evaluation the gate read.")
    forced: bool = Field(description="Promoted although the gate refused it.")
    note: str | None = Field(description="Why (a forced one: the gate's refusal).")
    promoted_by: str = Field(description="Who (cli:USER, api:KEY).")
    created_at: UtcDatetime = Field(description="When.")
