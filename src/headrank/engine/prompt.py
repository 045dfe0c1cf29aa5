"""The listwise prompt: token ids, the exact token span of every passage, and the attending rows.

The prompt is assembled from separately tokenized segments, so every span is exact by
construction (no offset guessing at token boundaries):

    <chat template head>Here are some passages:\\n [1] p1 \\n [2] p2 \\n ... [N] pN \\n
    Please find information that is relevant to the following query in the passages above.\\n
    Query: {query}<chat template tail>

Everything up to and including the newline after the last passage is the *prefix* (it does not
depend on the query, so its keys/values can be cached); the rest is the *tail*, whose tokens are
the attending rows Q. The content-free calibration query ``N/A`` only needs a new tail.

Passages and queries are untrusted text: they are tokenized with special tokens split into plain text,
so a passage that contains ``<|im_end|>`` cannot close the chat turn or fake the prompt's structure.

Thread safety: a transformers fast tokenizer switches special-token splitting by flipping a flag on its one
shared Rust backend at every call, so two threads tokenizing at once can each get the other's setting (a
chat template's ``<|im_end|>`` split into plain text). The builder therefore never calls the shared
tokenizer after construction: it encodes with two private copies of the backend, one that keeps special
tokens (trusted text) and one that splits them (untrusted text), neither ever changed again. A slow (Python)
tokenizer has no such backend; its calls go through one lock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

INTRO = "Here are some passages:"
INSTRUCTION = "Please find information that is relevant to the following query in the passages above."
CALIBRATION_QUERY = "N/A"
_SENTINEL = "HEADRANKCONTENTSENTINEL"
_MAX_CHARS_PER_TOKEN = 32

log = logging.getLogger(__name__)


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace (newlines included) so passages cannot fake the prompt's layout."""
    return " ".join(text.split())


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are built; saved with head sets so a head set is used with the prompt it was chosen on."""

    max_passage_tokens: int = 100
    max_query_tokens: int = 128
    chat_template: str = "auto"  # "auto": use the tokenizer's template if it has one; "none": plain text

    def __post_init__(self) -> None:
        for name in ("max_passage_tokens", "max_query_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.chat_template not in ("auto", "none"):
            raise ValueError(f"chat_template must be 'auto' or 'none', got {self.chat_template!r}")


@dataclass(frozen=True)
class PassageSegment:
    """One passage as it enters the prompt: its ids (label included), text and whether it was cut."""

    ids: list[int]
    text: str
    truncated: bool


@dataclass(frozen=True)
class ListwisePrompt:
    prefix_ids: list[int]
    tail_ids: list[int]
    passage_spans: list[tuple[int, int]]  # [start, end) token positions of "[i] p_i" in the prompt
    passage_texts: list[str]  # "[i] p_i" exactly as it went in (after normalization and truncation)
    truncated: list[bool] = field(default_factory=list)

    @property
    def input_ids(self) -> list[int]:
        return self.prefix_ids + self.tail_ids

    @property
    def attending_rows(self) -> tuple[int, int]:
        """[start, end) of the rows Q: the instruction after the last passage to the end of the prompt."""
        return len(self.prefix_ids), len(self.prefix_ids) + len(self.tail_ids)

    def __len__(self) -> int:
        return len(self.prefix_ids) + len(self.tail_ids)


_SLOW_TOKENIZER_LOCK = threading.Lock()  # slow tokenizers keep Python state: one call at a time


class TokenEncoder:
    """Thread-safe encoding of trusted and untrusted text with one tokenizer (see the module docstring).

    Fast tokenizers: two private copies of the backend, configured once (no truncation, no padding, special
    tokens kept or split) and only read afterwards. Ids equal ``tokenizer(text, add_special_tokens=False,
    split_special_tokens=...)``.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._trusted = self._untrusted = None
        if backend is not None:
            from tokenizers import Tokenizer

            serialized = backend.to_str()  # the copies' flags are set below, whatever the shared one holds now
            self._trusted, self._untrusted = Tokenizer.from_str(serialized), Tokenizer.from_str(serialized)
            for copy, split in ((self._trusted, False), (self._untrusted, True)):
                copy.no_truncation()
                copy.no_padding()
                copy.encode_special_tokens = split

    def encode(self, text: str, untrusted: bool) -> list[int]:
        """Token ids without added special tokens; ``untrusted``: special-token strings become plain text."""
        if self._trusted is None:
            with _SLOW_TOKENIZER_LOCK:
                return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=untrusted)["input_ids"])
        return list((self._untrusted if untrusted else self._trusted).encode(text, add_special_tokens=False).ids)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Untrusted text's ids and each token's character span, as ``return_offsets_mapping`` gives them."""
        if self._untrusted is None:
            with _SLOW_TOKENIZER_LOCK:
                enc = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True,
                                     return_offsets_mapping=True)
            return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        enc = self._untrusted.encode(text, add_special_tokens=False)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def decode(self, ids: list[int]) -> str:
        """Text of token ids (decoding reads the tokenizer, it does not change it)."""
        if self._trusted is None:
            with _SLOW_TOKENIZER_LOCK:
                return self.tokenizer.decode(ids)
        return self.tokenizer.decode(ids)


class PromptBuilder:
    """Builds listwise prompts for one tokenizer (and its chat template); safe to use from several threads."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: PromptSettings | None = None) -> None:
        self.tokenizer = tokenizer
        self.encoder = TokenEncoder(tokenizer)
        self.settings = settings or PromptSettings()
        self.uses_chat_template, template_head, self._template_tail = self._template_parts()
        self._head_ids = self._encode(template_head + INTRO + "\n")
        self._sep_ids = self._encode("\n")
        specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if t]
        # A template tail that opens with a special token is encoded apart from the (untrusted) query, keeping
        # its special tokens; a tail without any is plain text, encoded with the query as one string.
        self._tail_is_separate = any(self._template_tail.startswith(t) for t in specials) or any(
            t in self._template_tail for t in specials)

    def _template_parts(self) -> tuple[bool, str, str]:
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if self.settings.chat_template == "auto" and has_template:
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": _SENTINEL}],
                tokenize=False,
                add_generation_prompt=True,
                enable_thinking=False,  # Qwen3: no reasoning block, the prompt ends where the answer would start
            )
            if rendered.count(_SENTINEL) != 1:
                raise ValueError("the tokenizer's chat template does not render the user message verbatim")
            head, tail = rendered.split(_SENTINEL)
            return True, head, tail
        if self.settings.chat_template == "auto":
            log.warning("tokenizer has no chat template; using a plain-text listwise prompt")
        bos = self.tokenizer.bos_token or ""
        return False, bos, "\n"

    def _encode(self, text: str) -> list[int]:
        """Trusted text (the template and the instructions): special tokens stay special."""
        return self.encoder.encode(text, untrusted=False)

    def _encode_text(self, text: str) -> list[int]:
        """Untrusted text (passages, queries): a special token's string is tokenized as plain text."""
        return self.encoder.encode(text, untrusted=True)

    def cut(self, text: str, limit: int) -> tuple[str, bool]:
        # No token spans more than a few dozen characters: cutting the characters first keeps a
        # megabyte-long passage from being tokenized in full.
        clipped = text[: limit * _MAX_CHARS_PER_TOKEN]
        ids = self._encode_text(clipped)
        if len(ids) <= limit and len(clipped) < len(text):
            return clipped, True
        if len(ids) <= limit:
            return text, False
        # Byte-level tokenizers can cut a character in two; drop the dangling replacement character.
        return self.encoder.decode(ids[:limit]).rstrip("\ufffd").strip(), True

    def cut_left(self, text: str, limit: int) -> tuple[str, bool]:
        """``cut`` from the other end: the last ``limit`` tokens (TEI's ``truncation_direction: Left``)."""
        clipped = text[-limit * _MAX_CHARS_PER_TOKEN:]
        ids = self._encode_text(clipped)
        if len(ids) <= limit:
            return clipped, len(clipped) < len(text)
        return self.encoder.decode(ids[-limit:]).lstrip("\ufffd").strip(), True

    def passage_segments(self, passages: list[str], start: int = 1) -> list[PassageSegment]:
        """Normalize, cut to the token budget and tokenize passages labelled ``[start]``, ``[start+1]``..."""
        segments = []
        for offset, passage in enumerate(passages):
            text = normalize_text(passage)
            if not text:
                raise ValueError(f"passage {offset} is empty (the ranker ranks empty passages last without the model)")
            text, truncated = self.cut(text, self.settings.max_passage_tokens)
            labelled = f"[{start + offset}] {text}"
            segments.append(PassageSegment(ids=self._encode_text(labelled), text=labelled, truncated=truncated))
        return segments

    def tail_ids(self, query: str) -> list[int]:
        """Token ids of the instruction, the query and the chat template's end: the attending rows."""
        text = normalize_text(query)
        if not text:
            raise ValueError("query is empty")
        text, _ = self.cut(text, self.settings.max_query_tokens)
        if self._tail_is_separate:  # it opens with a special token, a token boundary anyway
            return self._encode_text(f"{INSTRUCTION}\nQuery: {text}") + self._encode(self._template_tail)
        return self._encode_text(f"{INSTRUCTION}\nQuery: {text}{self._template_tail}")

    def overhead(self, query: str) -> int:
        """Tokens a prompt needs besides its passages (used to pack windows into the context)."""
        return len(self._head_ids) + len(self.tail_ids(query))

    def segment_cost(self, segment: PassageSegment) -> int:
        return len(segment.ids) + len(self._sep_ids)

    def assemble(self, query: str, segments: list[PassageSegment]) -> ListwisePrompt:
        if not segments:
            raise ValueError("a listwise prompt needs at least one passage")
        prefix = list(self._head_ids)
        spans = []
        for segment in segments:
            spans.append((len(prefix), len(prefix) + len(segment.ids)))
            prefix += segment.ids + self._sep_ids
        return ListwisePrompt(
            prefix_ids=prefix,
            tail_ids=self.tail_ids(query),
            passage_spans=spans,
            passage_texts=[s.text for s in segments],
            truncated=[s.truncated for s in segments],
        )

    def build(self, query: str, passages: list[str]) -> ListwisePrompt:
        return self.assemble(query, self.passage_segments(passages))


PROBE_QUERY, PROBE_PASSAGES = "probe query", ["first probe passage", "second probe passage"]


def prompt_hash(tokenizer: PreTrainedTokenizerBase, prompt_settings: PromptSettings) -> str:
    """Hash of a probe prompt's token ids: changes with the template, the instructions or the tokenizer (part
    of every cache key computed from prompts)."""
    import dataclasses
    import hashlib
    import json

    probe = PromptBuilder(tokenizer, prompt_settings).build(PROBE_QUERY, PROBE_PASSAGES)
    blob = json.dumps([probe.prefix_ids, probe.tail_ids, dataclasses.asdict(prompt_settings)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
