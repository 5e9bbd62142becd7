"""Prompt-injection and jailbreak heuristics for inputs.

Phrases that almost only appear in attacks (overriding earlier instructions, DAN-style persona
templates, asking for the system prompt, long base64 blobs that decode to text) count as strong
cues; phrases that also appear in honest prompts ("act as", "pretend", "developer mode", a name
like "DAN") count as weak cues. A text is flagged when its cue weights reach the threshold
(default 1.0: one strong cue or two different weak ones), so a recipe that says "ignore the
crust" or a coding question about "the system prompt field" does not trip it on its own.

Two more weak kinds help with role-play jailbreaks: persona templates (fill-in slots like
"[INSERT PROMPT HERE]", "(CHARACTER NAME)=[...]" blocks, "you will always answer as") and the
learned cue (``_learned``: a linear model over words, on texts of 30+ words). One strong cue
judges the shape of a text instead of its phrases: the token salad of a GCG adversarial suffix
(``_adversarial``).

Unlike PII and secrets this is a whole-text judgement, so it runs on inputs, not in the stream.
"""

from __future__ import annotations

import base64
import binascii

from corral.guardrails._adversarial import adversarial_detector
from corral.guardrails._detector import Detector, Match, Rule, word_alternation
from corral.guardrails._learned import learned_detector

STRONG = 1.0
WEAK = 0.5

_W = r"(?:\W+\w+){0,4}?\W+"


def _decodes_to_text(candidate: str) -> bool:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not decoded:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in decoded)
    return printable / len(decoded) > 0.9


def _alternatives(*phrases: str) -> str:
    return "|".join(phrases)


# Strong rules come first: where alternatives overlap, the first one that matches at a position
# wins, and "Developer Mode enabled" must count as the template, not as the weak "developer mode".
INJECTION_RULES: dict[str, tuple[str, Rule]] = {
    "override": (
        r"\b(?:ignore|ignoring|disregard|forget|skip|override|bypass|neglect|abandon|discard"
        r"|overwrite)"
        + _W
        + r"(?:previous|prior|above|earlier|preceding|initial|original|former|existing|all|any"
        r"|every|your|the|following)(?:\W+\w+){0,3}?\W+(?:instructions?|prompts?|rules|directions"
        r"|guidelines|directives|commands|context|constraints|programming|policies|restrictions"
        r"|guardrails|filters|safeguards|training|inputs?|messages|conversation|responses)\b",
        Rule("instruction_override", "high"),
    ),
    "new_instructions": (
        _alternatives(
            r"\b(?:new|updated|real|actual|true) (?:instructions|rules|directives|task)\s*:",
            r"\bnevermind\b.{0,20}\binstructions",
            r"\bstop everything\b",
            r"\bforget (?:everything|all)(?: that)? you(?: have|'ve)? (?:learned|been told|know"
            r"|were told)\b",
            r"\b(?:told|learned|given|instructed) before this conversation\b",
            r"\bfrom now on,? (?:you|your|act|respond|answer|always|only|reply)\b",
            r"\b(?:modify|modifying|reprogram|reprogramming|change|changing|update|updating)"
            r" your (?:programming|code|rules|guidelines|instructions)\b",
        ),
        Rule("instruction_override", "high"),
    ),
    "dan": (
        _alternatives(
            r"\bdo anything now\b",
            r"\bstrive to avoid norms\b",
            r"\balways intelligent and machiavellian\b",
            r"\bfully unlocked\b",
            r"\bno (?:prohibitions|limits|boundaries)\b",
            r"\bzero restrictions\b",
            r"\bbreak the (?:\w+'? )?rules\b",
        ),
        Rule("jailbreak_persona", "high"),
    ),
    "jailbreak_terms": (
        _alternatives(
            r"\bjailbr(?:oken|eaking)\b",
            r"\[(?:🔓)?jailbreak\]",
            r"\bdeveloper mode (?:enabled|output|response|policies)\b",
            r"\b(?:god|sudo|unrestricted|evil|opposite) mode\b",
            r"🔓|🔒",
            r"\bstay in character\b",
            r"\bstay in (?:\w+ ){1,2}mode\b",
            r"\blimit output to <",
            r"\bawait \[?input\]? to continue output\b",
            r"\b(?:don'?t|do not|never|stop) (?:respond|answer|reply|act)(?:ing)? (?:as|like)"
            r" (?:chat ?gpt|gpt|an ai|a language model|yourself|the assistant)\b",
            r"\bbreak(?:ing)? character\b",
        ),
        Rule("jailbreak_template", "high"),
    ),
    "no_limits": (
        r"\b(?:no|without|free (?:of|from)|not bound by|broken free of|break free of|freed from"
        r"|don'?t have to (?:abide by|follow)|do not have to (?:abide by|follow)"
        r"|not (?:restricted|limited) by|bypass(?:es|ing)?|ignores?|beyond|violat(?:e|es|ing)"
        r"|regardless of|above (?:any|all)|free (?:itself|yourself|himself|herself|themselves)"
        r" from|(?:concerns?|regard) for)"
        r"(?:\W+\w+){0,3}?\W+(?:restrictions|filters?|filtering|censorship|censor|guidelines"
        r"|confines|limitations|limits|ethics|morals|morality|ethical|moral|content polic(?:y|ies)"
        r"|safety|boundaries|rules|legality|safeguards)\b"
        r"|\b(?:don'?t|do not|doesn'?t|does not) have (?:any )?(?:morals|moralities|ethics"
        r"|a conscience)\b",
        Rule("jailbreak_unrestricted", "high"),
    ),
    "unfiltered_persona": (
        _alternatives(
            r"\b(?:amoral|unfiltered|uncensored|unrestricted|unlimited|unhinged)\b(?:\W+\w+){0,2}?"
            r"\W+(?:ai|chatbot|bot|character|model|language model|responses?|version|assistant"
            r"|persona|mode|answers?)\b",
            r"\bno matter how (?:\w+ )?(?:immoral|unethical|illegal|dangerous|offensive"
            r"|inappropriate|harmful|explicit)\b",
            r"\bwithout (?:any )?(?:refusals?|refusing|disclaimers?|warnings?|censorship)\b",
            r"\b(?:never|do not|don'?t) (?:ever )?(?:refuse|deny answering|decline)\b",
            r"\b(?:do not|don'?t|never|without) (?:\w+ ){0,2}"
            r"(?:educate me|(?:show|give|include|add)"
            r" (?:me )?(?:the |any )?(?:risks|warnings?|disclaimers?|caveats))\b",
        ),
        Rule("jailbreak_unrestricted", "high"),
    ),
    "exfiltration": (
        r"\b(?:reveal|show|print|repeat|output|display|tell|give|share|disclose|leak|dump"
        r"|spell[- ]check|translate|encode|summari[sz]e|list|write|recite|copy|paste|return)"
        + _W
        + r"(?:system prompt|system message|initial (?:instructions|prompt)|(?:original|hidden"
        r"|secret|starting|initial|previous|internal|developer|system) (?:instructions|prompt"
        r"|rules|directives|configuration)|instructions (?:you were|you've been|you have been"
        r"|given to you)|(?:text|prompt|instructions|everything) above|your (?:instructions|rules"
        r"|prompt)|the (?:instructions|prompt) (?:above|you were given))\b"
        r"|\bwhat (?:were|have) you (?:been )?told\b|\bbeginning of (?:this|the|our) conversation\b"
        r"|\bwhat (?:are|were|is) your (?:\w+ ){0,2}(?:instructions|rules|prompt|directives"
        r"|guidelines)\b"
        r"|\b(?:text|instructions|prompt|words) (?:you were|you've been|you have been)"
        r" (?:given|told)\b"
        r"|\brepeat (?:this|the|our) (?:entire |whole )?conversation\b"
        r"|\bmy instructions are\b|\bi was instructed to\b"
        r"|\bsystem[ _]?prompt is\s*:"
        r"|\b(?:log|print|echo|dump)\(\s*(?:system_?prompt|instructions)\b",
        Rule("system_prompt_exfiltration", "high"),
    ),
    "weak_terms": (
        r"\bjailbreak\b|\bdeveloper mode\b|\bsystem[ _]?prompt\b",
        Rule("jailbreak_cue", "medium"),
    ),
    "persona": (
        r"\b(?:act as|acting as|pretend(?:ing)? (?:to be|you are|that you)|role[- ]?play"
        r"|you are (?:now|going to|about to)|immerse yourself|simulate|hypothetical(?:ly)?"
        r"|in this fictional|fictional world|alter ego|persona|in character"
        r"|you will (?:now )?(?:respond|answer|act|be)|answer (?:as|like)|respond (?:as|like)"
        r"|two (?:different |separate )?(?:responses|answers|paragraphs|styles|entities"
        r"|personalities|characters|ais)|personify|transform into|you will become"
        r"|(?:keep|stay) (?:to |in )?(?:this|the|your) role|in the role of|take on the role)\b",
        Rule("roleplay_cue", "medium"),
    ),
    "policy_talk": (
        r"\b(?:openai|anthropic|content polic(?:y|ies)|ethical guidelines|unfiltered|uncensored"
        r"|amoral|immoral|unethical|illegal|offensive|explicit|profanity|swear|harmful|dangerous"
        r"|censored|refuse|refusal|disclaimer|warnings?|nsfw|lewd|horny|legality|ethics"
        r"|ethical guid(?:e)?lines|morals|unaligned|insult(?:s|ing)?|graphically|gore|gory"
        r"|diabolical)\b",
        Rule("policy_cue", "medium"),
    ),
    "persona_template": (
        _alternatives(
            # fill-in slots of a shared prompt template: "[INSERT PROMPT HERE]", "[PROMPT]"
            r"\[(?:insert|type|put|enter|write)\b[^\]\n]{0,40}\]",
            r"\[your\b[^\]\n]{0,30}?(?:prompt|question|request|here)\b[^\]\n]{0,10}\]",
            r"\b(?:replace|insert) (?:[\w.]+ ){0,8}with whatever you want\b",
            r"\[(?:prompt|input|role|topic|keyword|targetlanguage)\]",
            # persona spec blocks: "(CHARACTER NAME)=[...]", "+: Personality = [...]"
            r"\((?:user|character|assistant|personality|char|output|title)(?: \w+)?\)\s*=\s*\[",
            r"\+:\s*(?:user|assistant|personality)\s*=\s*\[",
            # a persona's answer format, or the chatbot addressed by name
            r"\b(?:you will|you must|always) (?:always |only )?(?:answer|respond|reply)"
            r" (?:(?:as|like)\b|\"as\b|with \"as\b)",
            r"\b(?:whatever|anything) (?:they|you|i|the user|anyone|people) (?:ask|want|request)",
            r"\bonly (?:respond|answer|reply) as\b",
            r"\bchat ?gpt\b",
        ),
        Rule("persona_template", "medium"),
    ),
}

# Persona names only count in capitals ("DAN", not "Dan"), so they are matched case-sensitively.
_NAME_RULES: dict[str, tuple[str, Rule]] = {
    "persona_names": (
        r"\b(?:DAN|STAN|DUDE|AIM|APOPHIS|BISH|KEVIN|UCAR|NRAF|AntiGPT|BetterDAN|Mongo Tom)\b",
        Rule("jailbreak_cue", "medium"),
    ),
}

_BLOB_RULES: dict[str, tuple[str, Rule]] = {
    "base64_blob": (
        r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{80,4096}={0,2}(?![A-Za-z0-9+/=])",
        Rule("encoded_payload", "high", _decodes_to_text),
    ),
}

# Every rule above opens with one of these words (or "[", "(", "+:" or a padlock emoji), so the
# full regex is only tried where one starts. Matching runs over the lower-cased text.
_FIRST_WORDS = (
    "told", "learned", "given", "instructed", "log", "echo", "ignor", "disregard", "forget",
    "skip", "overrid", "bypass", "neglect", "abandon", "discard", "overwrit", "new",
    "updat", "real", "actual", "true", "nevermind", "stop", "from", "modif", "reprogram",
    "chang", "do", "strive", "always", "fully", "no", "zero", "break", "jailbr",
    "developer", "god", "sudo", "unrestricted", "evil", "opposite", "stay", "without",
    "free", "not", "broken", "don", "beyond", "amoral", "unfiltered", "uncensored",
    "unlimited", "unhinged", "never", "reveal", "show", "print", "repeat", "output",
    "display", "tell", "give", "share", "disclose", "leak", "dump", "spell", "translate",
    "encode", "summari", "list", "write", "recite", "copy", "paste", "return", "what",
    "beginning", "my", "i", "text", "instructions", "prompt", "words", "system", "act",
    "pretend", "role", "you", "immerse", "simulate", "hypothetical", "in", "fictional",
    "alter", "persona", "answer", "respond", "two", "openai", "anthropic", "content",
    "ethical", "immoral", "unethical", "illegal", "offensive", "explicit", "profanity",
    "swear", "harmful", "dangerous", "censored", "refus", "disclaimer", "warning",
    "limit", "await", "violat", "regardless", "above", "concern", "regard", "doesn",
    "does", "personify", "transform", "keep", "take", "nsfw", "lewd", "horny", "legality",
    "ethics", "morals", "insert", "only", "chat", "replace", "whatever", "anything",
    "unaligned", "insult", "graphically", "gore", "diabolical",
)  # fmt: skip
# The persona-spec rules open with "(" or "+:", common in code, so the key only stops there when
# one of their words follows.
_KEY = (
    r"\b" + word_alternation(_FIRST_WORDS) + r"|[\[🔓🔒]|\+:"
    r"|\((?=user|character|assistant|personality|char|output|title)"
)

_WEIGHTS = {"high": STRONG, "medium": WEAK, "low": WEAK, "critical": STRONG}


def injection_detectors() -> tuple[Detector, ...]:
    # Injection is judged on whole inputs and never streamed, so max_span (which sizes stream
    # hold-back) is nominal here.
    return (
        Detector("injection", INJECTION_RULES, max_span=300, lookahead=1, fold_case=True, key=_KEY),
        Detector("injection", _NAME_RULES, max_span=16, lookahead=1, key="[ABDKMNSU][A-Za-z]"),
        Detector("injection", _BLOB_RULES, max_span=4100, lookahead=1, key="[A-Za-z0-9+/]{80}"),
        adversarial_detector(),
        learned_detector(),
    )


def greatest_weight(detector: Detector) -> float:
    """The most one detector's cues can add to a text's score (a weak kind counts once)."""
    return max(_WEIGHTS[rule.severity] for rule in detector.rules.values())


def injection_score(matches: list[Match]) -> float:
    """Strong cues add their weight each time; a weak cue counts once per kind."""
    score = 0.0
    weak_seen: set[str] = set()
    for match in matches:
        weight = _WEIGHTS[match.rule.severity]
        if weight >= STRONG:
            score += weight
        elif match.rule.type not in weak_seen:
            weak_seen.add(match.rule.type)
            score += weight
    return score
