"""Rendering a notification from templates/notifications/, strictly.

Names (``<lang>`` is en or es; a missing language falls back to English):
  <template>.<lang>.subject.txt   email subject (one line)
  <template>.<lang>.txt           email text part
  <template>.<lang>.html          email HTML part (extends notifications/_base.html)
  <template>.<lang>.push.txt      push: first line the title, the rest the body; optional,
                                  falling back to generic.<lang>.push.txt ("New update
                                  for Maria — open the app"): push bodies stay generic.
  <template>.<lang>.sms.txt       a text message (at most 320 characters, no figures);
                                  optional, falling back to generic.<lang>.sms.txt
  <template>.<lang>.item.txt/.html  one line of a daily/weekly digest

Strict: ``{{ name }}`` with no such variable raises MissingVariable instead of printing
nothing, so a job that forgets a value gets a failed row saying which, not a blank email.
Use ``{% if name %}`` for optional values (``if``/``for`` stay lenient).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from django.conf import settings
from django.template import Context, Engine, TemplateDoesNotExist
from django.utils.safestring import mark_safe

# What a text may carry (notifications/sms.py explains why).
MAX_BODY = 320
ELLIPSIS = "…"
# Figures a grade or attendance line would carry: "85%", "85 %", "3/5", "92.5", "7,5".
FIGURE_RE = re.compile(r"\d+\s*%|\d+\s*/\s*\d+|\d+[.,]\d+")


def fit(body: str) -> str:
    """One line of at most ``MAX_BODY`` characters: whitespace collapsed, cut at a word
    with an ellipsis when longer."""
    body = " ".join(body.split())
    if len(body) <= MAX_BODY:
        return body
    cut = body[: MAX_BODY - len(ELLIPSIS)]
    if " " in cut[MAX_BODY // 2:]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:") + ELLIPSIS


def figures_in(body: str) -> list[str]:
    """The grade- or attendance-like figures in ``body`` (empty: none)."""
    return FIGURE_RE.findall(body)


class RenderError(Exception):
    """The message cannot be rendered: a permanent failure of this one message."""


class MissingVariable(RenderError):
    pass


class _Strict(str):
    """Engine.string_if_invalid: Django formats it with the variable name (``%s``)."""

    def __new__(cls):
        return super().__new__(cls, "%s")

    def __mod__(self, variable):
        name = getattr(variable, "var", variable)  # a template.base.Variable, or a literal
        raise MissingVariable(f"template variable {str(name)!r} is missing from the context")


@functools.cache
def engine() -> Engine:
    # A private engine: strictness must not leak into the admin's templates.
    return Engine(dirs=[str(settings.BASE_DIR / "templates")], string_if_invalid=_Strict(), autoescape=True)


@dataclass
class Rendered:
    subject: str = ""
    text: str = ""
    html: str = ""
    push_title: str = ""
    push_body: str = ""
    sms_body: str = ""


def _get(name: str, language: str, kind: str, *, fallback: str | None = None):
    names = [f"notifications/{name}.{language}.{kind}"]
    if language != "en":
        names.append(f"notifications/{name}.en.{kind}")
    if fallback:
        names += [f"notifications/{fallback}.{language}.{kind}", f"notifications/{fallback}.en.{kind}"]
    try:
        return engine().select_template(names)
    except TemplateDoesNotExist:
        raise RenderError(f"no template {names[0]}") from None


def _render(template, context: dict, *, html: bool) -> str:
    try:
        return template.render(Context(context, autoescape=html))
    except RenderError:
        raise
    except Exception as exc:  # a broken template is this message's problem, not the batch's
        raise RenderError(f"template {template.origin.template_name} failed: {exc}") from exc


def template_context(notification) -> dict:
    recipient = notification.recipient
    return {
        **notification.context,
        "recipient_first_name": recipient.first_name or recipient.get_username(),
        "notification_id": notification.pk,
        "language": notification.language,
    }


def _digest_lines(context: dict, language: str) -> None:
    """Render each digest item's line in place (text and HTML)."""
    for child in context.get("children", []):
        for item in child.get("items", []):
            line_ctx = {**item, "child_first_name": child.get("first_name", "")}
            item["line_text"] = _render(_get(item["template"], language, "item.txt"), line_ctx, html=False).strip()
            item["line_html"] = mark_safe(_render(_get(item["template"], language, "item.html"), line_ctx, html=True).strip())


def render_email(notification) -> Rendered:
    ctx = template_context(notification)
    lang = notification.language
    if notification.template == "digest":
        _digest_lines(ctx, lang)
    subject = _render(_get(notification.template, lang, "subject.txt"), ctx, html=False)
    return Rendered(
        subject=" ".join(subject.split())[:200],
        text=_render(_get(notification.template, lang, "txt"), ctx, html=False).strip() + "\n",
        html=_render(_get(notification.template, lang, "html"), ctx, html=True),
    )


def render_push(notification) -> Rendered:
    ctx = template_context(notification)
    out = _render(_get(notification.template, notification.language, "push.txt", fallback="generic"), ctx, html=False)
    title, _, body = out.strip().partition("\n")
    return Rendered(push_title=title.strip()[:100], push_body=" ".join(body.split())[:240])


def render_sms(notification) -> Rendered:
    """The text: one line, cut to 320 characters (notifications/sms.py). A body that carries
    a grade or attendance figure is refused unless it is an emergency (the district's words)."""
    from notifications.models import EMERGENCY_CATEGORIES

    ctx = template_context(notification)
    body = fit(_render(_get(notification.template, notification.language, "sms.txt", fallback="generic"), ctx, html=False))
    if notification.category not in EMERGENCY_CATEGORIES and figures_in(body):
        raise RenderError(f"an SMS may not carry grade or attendance figures ({', '.join(figures_in(body))[:60]})")
    if not body:
        raise RenderError("the SMS body is empty")
    return Rendered(sms_body=body)


def render(notification) -> Rendered:
    if notification.channel == "sms":
        return render_sms(notification)
    return render_email(notification) if notification.channel == "email" else render_push(notification)
