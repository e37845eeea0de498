"""live: an application that streams and does nothing else (FMS's "live" application)."""
from .application import Application, NoSettings


class LiveApplication(Application):
    """Publish with ffmpeg or OBS to rtmp://host/live/<stream>, play it with Flash, ffplay or rtmpdump.

    Every application streams; this one adds nothing, so it is the place to
    publish when no application logic is wanted.  ``recordDir`` in its section
    enables ``publish(name, "record")``; ``record = all`` (or ``audio``,
    ``video``) records every live publish too, since ffmpeg and OBS never ask
    (see ``recording.RecordPolicy``).  Encode with ``-pix_fmt yuv420p``:
    lavfi's test source is RGB, and ffmpeg would otherwise make H.264 High
    4:4:4, which Flash Player and browsers cannot decode.
    """

    Settings = NoSettings

