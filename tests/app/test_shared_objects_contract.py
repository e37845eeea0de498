"""The shared objects contract (app/shared_objects.py ``SharedObjects``), written once for every implementation.

``SharedObjectsContract`` is a mixin of test methods, as tests/app/hub_contract.py
is for the hub: ``make_objects()`` returns two ``SharedObjects`` (or a
Deferred of them) that are two nodes of one cluster (two Redis-backed ones
on one Redis), or the same one twice for ``LocalSharedObjects``; listeners
use ``self.other`` and changes are applied through ``self.objects``, so
every test also proves an update crosses nodes.  ``settle()`` lets what is
in flight between nodes arrive.  Nothing assumes an answer is synchronous.
"""
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.shared_objects import (ClearSlots, DeleteSlot, LocalSharedObjects, SendToListeners,
                                              SetSlot, SharedObjectCode, SharedObjectLimits, SharedObjectRefused)

SCOPE = "app"


class Listener:
    def __init__(self, listener_id):
        self.id = listener_id
        self.updates = []

    def deliver(self, update):
        self.updates.append(update)


class SharedObjectsContract:
    def make_objects(self):
        raise NotImplementedError

    def settle(self):
        return succeed(None)

    @inlineCallbacks
    def setUp(self):
        self.objects, self.other = yield self.make_objects()

    @inlineCallbacks
    def refused(self, d):
        failure = yield self.assertFailure(d, SharedObjectRefused)
        return failure.code

    @inlineCallbacks
    def test_a_batch_is_one_version_delivered_to_every_listener_but_its_origin(self):
        a, b = Listener("a"), Listener("b")
        first = yield self.other.use(SCOPE, "board", False, a)
        self.assertEqual((first.version, first.data, first.persistent), (0, {}, False))
        yield self.other.use(SCOPE, "board", False, b)
        update = yield self.objects.apply(SCOPE, "board", (SetSlot("x", 1), SetSlot("y", [2]), DeleteSlot("z")),
                                          origin="a")
        yield self.settle()
        self.assertEqual(update.version, 1)
        self.assertEqual([applied.changed for applied in update.applied], [True, True, False])
        self.assertEqual((a.updates, b.updates), ([], [update]))
        snapshot = yield self.objects.snapshot(SCOPE, "board")
        self.assertEqual((snapshot.version, snapshot.data), (1, {"x": 1, "y": [2]}))

    @inlineCallbacks
    def test_nothing_changed_keeps_the_version(self):
        a = Listener("a")
        yield self.other.use(SCOPE, "board", False, a)
        yield self.objects.apply(SCOPE, "board", (SetSlot("x", 1),))
        same = yield self.objects.apply(SCOPE, "board", (SetSlot("x", 1), SendToListeners("ping", (1,)),
                                                         DeleteSlot("absent")))
        self.assertEqual(same.version, 1)
        self.assertEqual([applied.changed for applied in same.applied], [False, False, False])
        cleared = yield self.objects.apply(SCOPE, "board", (ClearSlots(), SetSlot("y", 2)))
        self.assertEqual((cleared.version, cleared.changes()), (2, {"x": None, "y": 2}))
        snapshot = yield self.objects.snapshot(SCOPE, "board")
        self.assertEqual(snapshot.data, {"y": 2})

    @inlineCallbacks
    def test_a_transient_object_goes_with_its_last_listener(self):
        yield self.other.use(SCOPE, "room", False, Listener("a"))
        yield self.objects.apply(SCOPE, "room", (SetSlot("x", 1),))
        self.assertEqual((yield self.other.release(SCOPE, "room", "a")), True)
        self.assertIsNone((yield self.objects.snapshot(SCOPE, "room")))
        code = yield self.refused(self.objects.apply(SCOPE, "room", (SetSlot("x", 2),)))
        self.assertEqual(code, SharedObjectCode.NO_WRITE_ACCESS)

    @inlineCallbacks
    def test_the_other_persistence_is_bad_persistence(self):
        yield self.other.use(SCOPE, "board", False, Listener("a"))
        code = yield self.refused(self.objects.use(SCOPE, "board", True, Listener("b")))
        self.assertEqual(code, SharedObjectCode.BAD_PERSISTENCE)

    @inlineCallbacks
    def test_limits_refuse_with_their_codes(self):
        for objects in {self.objects, self.other}:
            objects.configure(SCOPE, SharedObjectLimits(max_bytes=100, max_objects=2, max_listeners=1), None)
        yield self.other.use(SCOPE, "one", False, Listener("a"))
        self.assertEqual((yield self.refused(self.objects.use(SCOPE, "one", False, Listener("b")))),
                         SharedObjectCode.NO_READ_ACCESS)
        yield self.other.use(SCOPE, "two", False, Listener("a"))
        self.assertEqual((yield self.refused(self.objects.use(SCOPE, "three", False, Listener("a")))),
                         SharedObjectCode.OBJECT_CREATION_FAILED)
        self.assertEqual((yield self.refused(self.objects.apply(SCOPE, "one", (SetSlot("x", "y" * 100),)))),
                         SharedObjectCode.NO_WRITE_ACCESS)
        self.assertEqual((yield self.objects.snapshot(SCOPE, "one")).version, 0)     # all or nothing

    @inlineCallbacks
    def test_persistent_objects_need_a_store(self):
        code = yield self.refused(self.objects.use(SCOPE, "scores", True, Listener("a")))
        self.assertEqual(code, SharedObjectCode.OBJECT_CREATION_FAILED)


class LocalSharedObjectsTests(SharedObjectsContract, TestCase):
    def make_objects(self):
        objects = LocalSharedObjects()
        return succeed((objects, objects))
