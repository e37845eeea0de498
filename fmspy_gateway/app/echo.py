"""echotest: returns whatever it is sent, to prove every AMF type survives the trip.

Also home of the class aliases Red5's echo test (and so FMSPy's echotest
client) sends: ``RemoteClass`` round-trips as a typed object with its alias,
``ExternalizableClass`` needs its readExternal/writeExternal body read and
written field by field, so it is registered here.
"""
import pyamf

from .application import Application, NoSettings, remote

RED5_ECHO = "org.red5.server.webapp.echo."

# The body Red5's ExternalizableClass writes, in order:
# (pyamf DataInput/DataOutput method suffix, extra read arguments, extra write arguments).
_EXTERNAL_LAYOUT = (
    ("Boolean", (), ()), ("Boolean", (), ()),
    ("Byte", (), ()), ("Byte", (), ()), ("Byte", (), ()), ("Byte", (), ()), ("Byte", (), ()),
    ("Double", (), ()), ("Float", (), ()),
    ("Int", (), ()), ("Int", (), ()), ("Int", (), ()),
    ("MultiByte", (7, "iso-8859-1"), ("iso-8859-1",)), ("MultiByte", (14, "utf-8"), ("utf-8",)),
    ("Object", (), ()),
    ("Short", (), ()), ("Short", (), ()), ("Short", (), ()),
    ("UnsignedInt", (), ()), ("UnsignedInt", (), ()),
    ("UTF", (), ()), ("UTFBytes", (12,), ()),
)

#: What Red5's client writes into the body (and checks when it reads it back).
RED5_EXTERNAL_VALUES = (
    True, False, 0, -1, 1, 127, -127, 1.0, 2.0, 0, -1, 1,
    "\xe4\xf6\xfc\xc4\xd6\xdc\xdf", "\xe4\xf6\xfc\xc4\xd6\xdc\xdf", [1, "one", 1.0],
    0, -1, 1, 0, 1, "Hello world!", "Hello world!",
)


class ExternalizableClass:
    """Red5 echo test's ``IExternalizable``: its body is a fixed sequence of typed fields."""

    class __amf__:
        external = True

    def __init__(self, values=RED5_EXTERNAL_VALUES):
        self.values = list(values)

    def __readamf__(self, data_input):
        self.values = [getattr(data_input, "read" + kind)(*read_args) for kind, read_args, _ in _EXTERNAL_LAYOUT]

    def __writeamf__(self, data_output):
        for (kind, _, write_args), value in zip(_EXTERNAL_LAYOUT, self.values):
            getattr(data_output, "write" + kind)(value, *write_args)

    def __eq__(self, other):
        return isinstance(other, ExternalizableClass) and self.values == other.values

    def __repr__(self):
        return f"ExternalizableClass({self.values!r})"


def register_red5_echo_classes():
    """Register the aliases of Red5's echo test with pyamf (idempotent)."""
    alias = RED5_ECHO + "ExternalizableClass"
    if alias not in pyamf.CLASS_CACHE:
        pyamf.register_class(ExternalizableClass, alias)


class EchoApplication(Application):
    """FMSPy's (and Red5's) echo test: ``echo(value)`` answers with ``value``, unchanged."""

    Settings = NoSettings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        register_red5_echo_classes()

    @remote
    def echo(self, client, value=None):
        return value
