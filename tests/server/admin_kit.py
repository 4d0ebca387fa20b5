"""Driving the admin as a browser does: read a form's fields from its page, post them back.

What the page does not show (a field the user may not set) can still be posted: an
attacker writes the body by hand. ``post_form`` starts from the page's own fields, when
the user may open it, and adds the changes.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

User = get_user_model()


class FormFields(HTMLParser):
    """The fields a browser would submit from the admin's change form (``id="*_form"``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fields: dict[str, str] = {}
        self.in_form = False
        self.select: str | None = None
        self.first_option: str | None = None
        self.textarea: str | None = None
        self.textarea_start = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        at = {key: value or "" for key, value in attrs}
        if tag == "form" and at.get("id", "").endswith("_form"):
            self.in_form = True
        if not self.in_form or "__prefix__" in at.get("name", ""):
            return
        name = at.get("name", "")
        if tag == "input" and name:
            kind = at.get("type", "text")
            if kind in ("submit", "button", "image", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in at:
                return
            self.fields[name] = at.get("value", "on" if kind == "checkbox" else "")
        elif tag == "select" and name:
            self.select, self.first_option = name, None
        elif tag == "option" and self.select:
            value = at.get("value", "")
            if self.first_option is None:
                self.first_option = value
                self.fields.setdefault(self.select, value)
            if "selected" in at:
                self.fields[self.select] = value
        elif tag == "textarea" and name:
            self.textarea = name
            self.fields[name] = ""
            self.textarea_start = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            if self.textarea_start and data.startswith("\n"):
                data = data[1:]  # browsers drop the newline that follows <textarea>
            self.textarea_start = False
            self.fields[self.textarea] += data


def form_of(client: Client, url: str) -> dict[str, str] | None:
    """The fields of the form at ``url``, or None when the user may not open it."""
    page = client.get(url)
    if page.status_code != 200:
        return None
    parser = FormFields()
    parser.feed(page.content.decode())
    return parser.fields


def post_form(client: Client, url: str, changes: dict[str, Any]) -> Any:
    """Post the page's form with ``changes`` (None: leave the field out)."""
    data: dict[str, Any] = {**(form_of(client, url) or {}), **changes}
    data.pop("csrfmiddlewaretoken", None)
    return client.post(url, {key: value for key, value in data.items() if value is not None})


def staff(username: str) -> Any:
    """A staff user holding every Django permission on crunch's models, as an admin grants."""
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="crunch"))
    return User.objects.get(pk=user.pk)  # no cached permissions


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def errors(response: Any) -> str:
    """The form errors on an admin page answered 200 (what the user reads)."""
    text: str = response.content.decode()
    return " ".join(part.split("</ul>")[0] for part in text.split('class="errorlist')[1:])
