"""TimeoutQueue (fmspy_gateway/deadline.py): many timeouts of a few durations on one DelayedCall."""
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.deadline import TimeoutQueue


class TimeoutQueueTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.queue = TimeoutQueue(self.clock)
        self.expired = []

    def add(self, name, duration):
        self.queue.add(name, duration, lambda: self.expired.append((name, self.clock.seconds())))

    def test_each_thing_expires_its_duration_after_it_was_added_and_in_that_order(self):
        self.add("a", 5)
        self.clock.advance(1)
        self.add("b", 5)
        self.add("c", 2)
        self.clock.pump([1] * 10)
        self.assertEqual(self.expired, [("c", 3), ("a", 5), ("b", 6)])
        self.assertEqual(len(self.queue), 0)

    def test_one_call_is_scheduled_whatever_the_number_of_things(self):
        for n in range(100):
            self.add(n, 30)
            self.clock.advance(0.01)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.queue), 100)

    def test_a_discarded_thing_never_expires_and_nothing_left_leaves_no_call(self):
        self.add("a", 5)
        self.add("b", 5)
        self.assertTrue(self.queue.discard("a"))
        self.assertFalse(self.queue.discard("a"))
        self.clock.advance(5)
        self.assertEqual(self.expired, [("b", 5)])
        self.add("c", 5)
        self.queue.discard("c")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_sooner_duration_added_later_moves_the_call_sooner(self):
        self.add("slow", 30)
        self.add("quick", 1)
        self.clock.advance(1)
        self.assertEqual(self.expired, [("quick", 1)])
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), 30)

    def test_adding_again_restarts_the_timeout(self):
        self.add("a", 5)
        self.clock.advance(4)
        self.add("a", 5)
        self.clock.advance(4)
        self.assertEqual(self.expired, [])
        self.clock.advance(1)
        self.assertEqual(self.expired, [("a", 9)])

    def test_an_expiry_may_discard_or_add_others(self):
        self.queue.add("a", 1, lambda: (self.expired.append("a"), self.queue.discard("b"), self.add("c", 1)))
        self.add("b", 1)
        self.clock.advance(1)
        self.assertEqual(self.expired, ["a"])
        self.clock.advance(1)
        self.assertEqual(self.expired, ["a", ("c", 2)])

    def test_an_expiry_that_raises_leaves_the_others_due_at_once(self):
        def broken():
            raise RuntimeError("expire failed")

        self.queue.add("a", 1, broken)
        self.add("b", 1)
        self.assertRaises(RuntimeError, self.clock.advance, 1)
        self.assertEqual(self.expired, [])
        self.clock.advance(0)
        self.assertEqual(self.expired, [("b", 1)])
