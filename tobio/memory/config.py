"""Memory settings. Module-specific config has no place in kernel.yaml yet, so they live here, in code."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MemoryConfig(BaseModel):
    """Budgets, retrieval weights and switches; override with `MemoryModule.configure(...)` or a subclass."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    budget_tokens: int = Field(1536, ge=64, description="the whole prompt (system, summary, memories, history)")
    summary_tokens: int = Field(192, ge=8, description="most tokens a summary may take in the prompt")
    # Recalled memories change every turn and sit next to the newest message, so they are re-read every turn:
    # 3 memories / 128 tokens instead of 5 / 256 measured cache reuse 0.66 -> 0.74 over a 30-turn chat, and
    # bench/person.py 0.759 -> 0.778 (facts 0.56 -> 0.67) on the embedded model.
    memory_tokens: int = Field(128, ge=0, description="most tokens the retrieved memories may take")
    reserve_tokens: int = Field(32, ge=0, description="left for hooks that run after memory's")
    message_overhead_tokens: int = Field(4, ge=0, description="chat-template tokens around each message")
    summarize_at: float = Field(0.75, gt=0, le=1, description="summarise when a thread's unsummarised tokens pass this share of the history budget")
    chunk_share: float = Field(0.7, gt=0, le=1, description="share of the unsummarised tokens folded into the next summary")
    max_chunk_tokens: int = Field(1024, ge=32, description="most tokens of messages sent to the summariser at once")
    max_history_messages: int = Field(400, ge=1, description="most messages after the checkpoint read per prompt")
    k: int = Field(3, ge=0, description="memories added to each prompt")
    w_relevance: float = 1.0
    w_recency: float = 0.05
    w_importance: float = 0.1  # tuned on LoCoMo dev with bench/locomo.py --grid
    recency_half_life_hours: float = Field(24.0 * 30, gt=0, description="in the agent's subjective time")
    w_sitting: float = Field(0.3, ge=0, description="weight of the best relevance in an item's sitting (the turns around an answer say what it answers)")
    w_date: float = Field(0.3, ge=0, description="weight for being said on a day or in a month the query names")
    rerank: bool = Field(True, description="reorder the best candidates by the learned ranker (memory/data/ranker.json), when it is there")
    hybrid_alpha: float = Field(0.4, ge=0, le=1, description="share of embedding similarity in relevance; the rest is BM25")
    context_turns: int = Field(2, ge=0, description="earlier turns of the same sitting whose words BM25 indexes with each message (0: none); answers are often worded by the question before them")
    context_weight: float = Field(0.7, ge=0, le=1, description="weight of the turn before in a message's BM25 terms; each turn further back counts this much less again")
    context_gap_hours: float = Field(6.0, ge=0, description="a longer pause in a channel ends a sitting: messages before it are not context")
    embed_batch: int = Field(64, ge=1)
    index_delay_ms: float = Field(50.0, ge=0, description="longest wait to index messages together (one transaction for several)")
    index: bool = Field(True, description="embed every durable message")
    summarize: bool = Field(True, description="keep threads under budget with recursive summaries")
    summarize_all_threads: bool = Field(False, description="also threads of agents without a chat model (users): they have no prompt to keep small")
    embed_model: str = "embed"
    summarize_model: str = "summarize"
    tokenizer_model: str = Field("chat-default", description="counts tokens for threads whose agent has no model")
