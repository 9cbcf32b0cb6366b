"""The canonical rich message as the agent API accepts it (``content`` of a reply): validated
here, written as ``MessageSent.content`` (``parley.outbound.RichMessage``), rendered per channel
by the egress (``egress/render.py``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

_Seq = list  # the field named "list" below shadows the builtin inside the class
_Text = Annotated[str, Field(min_length=1, max_length=1024)]
_Id = Annotated[str, Field(min_length=1, max_length=256)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ButtonBody(_Part):
    id: _Id
    title: _Text
    url: str | None = Field(None, max_length=2048)


class ListRowBody(_Part):
    id: _Id
    title: _Text
    description: str | None = Field(None, max_length=1024)
    section: str = Field("", max_length=256)


class OptionListBody(_Part):
    button: _Text
    rows: _Seq[ListRowBody] = Field(min_length=1, max_length=100)


class CardBody(_Part):
    title: _Text
    subtitle: str | None = Field(None, max_length=2048)
    image_url: str | None = Field(None, max_length=2048)
    url: str | None = Field(None, max_length=2048)
    buttons: _Seq[ButtonBody] = Field(default_factory=_Seq, max_length=10)


class GeoPointBody(_Part):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: str | None = Field(None, max_length=256)
    address: str | None = Field(None, max_length=1024)


class TemplateCallBody(_Part):
    name: _Id
    language: str = Field("en", min_length=2, max_length=16)
    parameters: _Seq[Annotated[str, Field(max_length=1024)]] = Field(default_factory=_Seq, max_length=32)


class MediaBody(_Part):
    kind: str = Field(pattern=r"^(image|audio|video|document|file|sticker)$")
    url: str | None = Field(None, max_length=2048)
    media_id: str | None = Field(None, max_length=256)
    mime_type: str | None = Field(None, max_length=128)
    size_bytes: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, max_length=128)
    caption: str | None = Field(None, max_length=4096)
    filename: str | None = Field(None, max_length=512)


class RichMessageBody(_Part):
    text: str | None = Field(None, max_length=10_000)
    media: _Seq[MediaBody] = Field(default_factory=_Seq, max_length=10)
    buttons: _Seq[ButtonBody] = Field(default_factory=_Seq, max_length=100)
    quick_replies: _Seq[ButtonBody] = Field(default_factory=_Seq, max_length=100)
    list: OptionListBody | None = None
    cards: _Seq[CardBody] = Field(default_factory=_Seq, max_length=20)
    location: GeoPointBody | None = None
    template: TemplateCallBody | None = None
    subject: str | None = Field(None, max_length=998)

    @model_validator(mode="after")
    def _something(self) -> RichMessageBody:
        if not any((self.text, self.media, self.buttons, self.quick_replies, self.list, self.cards, self.location,
                    self.template)):
            raise ValueError("content needs text, media, options, cards, a location or a template")
        return self
