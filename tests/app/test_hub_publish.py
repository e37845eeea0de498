"""The publish path claims a stream's name through the hub (app/publishing.py ``_announce`` / ``_withdraw``).

The hub, not the process's ``LiveStreams``, decides whether a name is free:
a name published on another node is refused with NetStream.Publish.BadName,
and every way out of a publish gives the claim back.
"""
from fmspy_gateway.app.application import StreamRejected
from fmspy_gateway.app.hub import Publication

from .test_live import StreamCommandsTestCase


class PublishThroughTheHubTests(StreamCommandsTestCase):
    def published(self, name="cam"):
        return self.successResultOf(self.app.hub.find("live", name))

    def test_a_publish_announces_its_name_and_an_unpublish_withdraws_it(self):
        publisher = self.publisher("cam")
        self.assertEqual(self.published(), Publication("live", "cam", self.app.hub.node, publisher.session.client.id))
        publisher.send("closeStream", 0, None, stream_id=1)
        self.assertIsNone(self.published())

    def test_a_name_published_on_another_node_is_refused_with_bad_name(self):
        self.successResultOf(self.app.hub.announce("live", "cam", "a-client-of-another-node"))
        publisher = self.client()
        publisher.send("publish", 0, None, "cam", "live", stream_id=1)
        self.assertEqual(publisher.status_codes(), ["NetStream.Publish.BadName"])
        self.assertEqual(self.published().client_id, "a-client-of-another-node")
        self.assertNotIn("cam", self.app.live.streams)

    def test_a_second_local_publisher_is_refused_and_the_first_keeps_the_name(self):
        first = self.publisher("cam")
        second = self.client()
        second.send("publish", 0, None, "cam", "live", stream_id=1)
        self.assertEqual(second.status_codes(), ["NetStream.Publish.BadName"])
        self.assertEqual(self.published().client_id, first.session.client.id)

    def test_the_publisher_going_away_withdraws_the_name(self):
        publisher = self.publisher("cam")
        publisher.session.connection_lost("gone")
        self.assertIsNone(self.published())
        self.publisher("cam")

    def test_a_publish_refused_by_the_application_claims_nothing(self):
        def refuse(client, name, mode, query=""):
            raise StreamRejected("not you")
        self.app.on_publish = refuse
        publisher = self.client()
        publisher.send("publish", 0, None, "cam", "live", stream_id=1)
        self.assertEqual(publisher.status_codes(), ["NetStream.Publish.Denied"])
        self.assertIsNone(self.published())

    def test_a_recording_that_cannot_start_gives_the_name_back(self):
        self.app.record_dir = None
        publisher = self.client()
        publisher.send("publish", 0, None, "cam", "record", stream_id=1)
        self.assertEqual(publisher.status_codes(), ["NetStream.Publish.BadName"])
        self.assertIsNone(self.published())
