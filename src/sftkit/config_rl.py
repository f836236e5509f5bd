"""The ``rl:`` section of a training config: preference stages (dpo, kto, orpo, simpo) and RL stages
(grpo, rloo, rft), plus the stage names themselves.

Each field says which stages read it; the others ignore it, so one section serves a chained run
(SFT warm-up, then GRPO on the same questions) without repeating itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# every value of `stage`, in the order a pipeline usually runs them
STAGE_NAMES = ("sft", "dpo", "kto", "orpo", "simpo", "grpo", "rloo", "ppo", "rft")
Stage = Literal["sft", "dpo", "kto", "orpo", "simpo", "grpo", "rloo", "ppo", "rft"]
PREFERENCE_STAGES = frozenset({"dpo", "kto", "orpo", "simpo"})
ONLINE_STAGES = frozenset({"grpo", "rloo", "ppo"})  # sample from the policy while training
SAMPLING_STAGES = ONLINE_STAGES | {"rft"}  # need prompts with a verifiable answer and rewards


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RewardSpec(_Strict):
    """One reward: a registered name (see ``sftkit.rewards``) or a user function ``package.module:function``."""

    name: str = Field(description="registered reward (answer_match, format, length, ...) or an explicit "
                      "`module:function` (imported from the config only, never from data)")
    weight: float = Field(1.0, description="weight of this reward in the sum the policy maximises")
    options: dict = Field({}, description="keyword options of the reward (e.g. {style: gsm8k} for format)")


class CurriculumConfig(_Strict):
    """Curr-ReFT: train easy before hard, over a difficulty number or over staged task formats."""

    by: Literal["none", "difficulty", "format"] = Field(
        "none", description="none: shuffled as usual; difficulty: order by a number in each record's meta; "
        "format: order by staged task formats (e.g. yes/no, then multiple choice, then open answers)")
    field: str = Field("difficulty", description="the meta key holding the difficulty number (by: difficulty) "
                       "or the task format (by: format)")
    formats: list[str] = Field(["yes_no", "multiple_choice", "open"], description="by: format: the formats in "
                               "training order (records of other formats come last)")


class RLConfig(_Strict):
    """Preference and RL settings (each field names the stages that read it)."""

    # preference stages
    beta: float = Field(0.1, gt=0, description="dpo/kto/simpo: strength of the preference (DPO's beta); "
                        "orpo: weight of the odds-ratio term (lambda)")
    dpo_loss: Literal["sigmoid", "hinge", "ipo", "robust"] = Field("sigmoid", description="dpo: the loss "
                                                                   "variant (trl's loss_type)")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="dpo (sigmoid/robust): assumed share of "
                                   "flipped preference labels")
    dpo_sft_weight: float = Field(0.0, ge=0, description="dpo: also learn the chosen reply (negative "
                                  "log-likelihood, trl's \"sft\" loss; RPO), weighted; keeps generations fluent "
                                  "while the preference moves them")
    simpo_gamma: float = Field(0.5, ge=0, description="simpo: target reward margin (gamma / beta ratio as in "
                               "trl's CPO `simpo_gamma`)")
    kto_desirable_weight: float = Field(1.0, gt=0, description="kto: weight of desirable (label true) examples")
    kto_undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of undesirable examples")
    # online stages (grpo, rloo) and rft sampling
    kl_coef: float = Field(0.04, ge=0, description="grpo/rloo: KL penalty to the reference (the starting model; "
                           "with adapters: the base with adapters disabled, no second copy); 0: no reference")
    num_generations: int = Field(8, ge=2, description="grpo/rloo: completions sampled per question (the group)")
    temperature: float = Field(1.0, gt=0, description="grpo/rloo/rft: sampling temperature of rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="grpo/rloo/rft: nucleus sampling of rollouts")
    top_k: int | None = Field(None, ge=1, description="grpo/rloo/rft: top-k sampling of rollouts (unset: off)")
    max_completion_length: int = Field(256, ge=1, description="grpo/rloo/rft: longest sampled answer in tokens")
    epsilon: float = Field(0.2, gt=0, description="grpo: clipping range of the policy ratio")
    iterations: int = Field(1, ge=1, description="grpo: optimisation passes per batch of rollouts (mu)")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field("grpo", description="grpo: how token losses "
                                                                 "are normalised (trl's loss_type)")
    scale_rewards: bool = Field(True, description="grpo: divide advantages by the group's reward spread")
    rewards: list[RewardSpec] = Field([RewardSpec(name="answer_match")], description="grpo/rloo/rft: rewards "
                                      "summed with their weights (rft keeps samples whose answer_match is 1)")
    curriculum: CurriculumConfig = Field(CurriculumConfig(), description="grpo/rloo/rft: easy-to-hard order "
                                         "(Curr-ReFT)")
    log_completions: int = Field(2, ge=0, description="grpo/rloo: sampled completions written to metrics.jsonl "
                                 "at each logging step")
    # rejection sampling (rft)
    rft_samples: int = Field(8, ge=1, description="rft: answers sampled per question")
    rft_keep: int = Field(1, ge=1, description="rft: at most this many distinct verified-correct answers kept "
                          "per question")
    rft_keep_demonstration: bool = Field(True, description="rft: also keep the question's own demonstration "
                                         "when its answer is verified correct (RFT's data augmentation)")
    rft_rounds: int = Field(1, ge=1, description="rft: sample -> keep -> fine-tune rounds (each starts from "
                            "the previous round's model)")

    @model_validator(mode="after")
    def _unique_rewards(self):
        names = [r.name for r in self.rewards]
        if len(set(names)) != len(names):
            raise ValueError(f"rl.rewards: a reward is listed twice ({names}); list each once with its weight")
        return self
