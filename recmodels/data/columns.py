"""Which columns of an interaction table hold the user id, item id, rating and timestamp."""

from __future__ import annotations

from dataclasses import dataclass

COLUMN_HINT = "name the right ones with --user-col/--item-col/--rating-col/--timestamp-col (or Columns(...))"
"""What to do about a missing interaction column, appended to the message."""


@dataclass(frozen=True)
class Columns:
    """Names of the interaction columns.

    Parameters
    ----------
    user, item, rating : str
        Column names of the user id, item id and rating (the notebook's data uses
        ``Columns(item="book_id")``).
    timestamp : str or None
        Optional time column (integer epoch, float or date/time text); needed for
        ``split_interactions(method="leave-last-out")``.

    Examples
    --------
    >>> Columns(item="book_id").names
    ['user_id', 'book_id', 'rating']
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str = "rating"
    timestamp: str | None = None

    @property
    def names(self) -> list[str]:
        """The configured column names, in output order."""
        names = [self.user, self.item, self.rating]
        if self.timestamp is not None:
            names.append(self.timestamp)
        return names

    def to_dict(self) -> dict:
        """``{"user_col", "item_col", "rating_col", "timestamp_col"}`` (the run config's keys)."""
        return {
            "user_col": self.user,
            "item_col": self.item,
            "rating_col": self.rating,
            "timestamp_col": self.timestamp,
        }
