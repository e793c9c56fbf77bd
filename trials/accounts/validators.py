"""Password validators beyond Django's: a password must not contain the user's own name."""

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def _folded(text: str) -> str:
    """Lower case, accents removed, letters and digits only ("Hernández-Ruiz" -> "hernandezruiz")."""
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


class PersonalNameValidator:
    """Refuse a password containing the user's first name, last name or user name (each part of
    at least 3 letters), ignoring case, accents, spaces and punctuation: "ClaireBernard2026!" for
    Claire Bernard. Django's UserAttributeSimilarityValidator only compares the whole password
    with each attribute, so it accepts a name with a few characters added."""

    def __init__(self, min_part_length: int = 3) -> None:
        self.min_part_length = min_part_length

    def _parts(self, user) -> set[str]:  # noqa: ANN001
        parts: set[str] = set()
        for attribute in ("first_name", "last_name", "username"):
            value = str(getattr(user, attribute, "") or "")
            whole = _folded(value)
            if len(whole) >= self.min_part_length:
                parts.add(whole)
            for piece in value.replace(".", " ").replace("-", " ").replace("_", " ").split():
                folded = _folded(piece)
                if len(folded) >= self.min_part_length:
                    parts.add(folded)
        return parts

    def validate(self, password: str, user=None) -> None:  # noqa: ANN001
        if user is None:
            return
        folded = _folded(password)
        if any(part in folded for part in self._parts(user)):
            raise ValidationError(_("The password contains your name or user name."), code="password_contains_name")

    def get_help_text(self) -> str:
        return _("Your password cannot contain your name or user name.")
