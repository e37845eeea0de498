"""The /status page in a real browser (Debian's headless Chromium) against a running server.

ffmpeg publishes, a client is connected to the gateway and another one to a
gateway whose backend is down.  The page must load without console errors,
ask for the admin token, show the client, the live stream with its codecs
and the failing route as failing, and its disconnect button must disconnect
the client.  A screenshot is saved as a test artefact (see tests/e2e/browser.py).
"""
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from .browser import Browser, require_browser
from .operations import ADMIN_TOKEN, OperationsMixin


def _text_of(browser, selector):
    from selenium.webdriver.common.by import By

    def probe(driver):
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found and found[0].text else False
    return probe


class StatusPageTests(OperationsMixin, TestCase):
    timeout = 120

    def setUp(self):
        require_browser()
        return super().setUp()

    @inlineCallbacks
    def test_status_page(self):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC

        alice = yield connect_client(self.rtmp_url("shop/lobby"), "let-me-in", "alice", reactor=reactor,
                                     pageUrl="http://example.com/<b>page</b>")
        self.addCleanup(lambda: alice.transport.loseConnection() or alice.closed)
        yield alice.call("getUser", 42)
        bob = yield connect_client(self.rtmp_url("broken"), "let-me-in", "bob", reactor=reactor)
        self.addCleanup(lambda: bob.transport.loseConnection() or bob.closed)
        with self.assertRaises(Exception):
            yield bob.call("whoami")
        yield self.live_stream()
        code, page = yield self.api("clients?app=shop")
        alice_id = page["clients"][0]["id"]

        browser = yield deferToThread(Browser)
        self.addCleanup(deferToThread, browser.close)
        url = f"http://127.0.0.1:{self.http_port}/status"

        def load_and_log_in():
            browser.driver.get(url)                       # /status redirects to /status/
            dialog = browser.wait(EC.visibility_of_element_located((By.ID, "token-dialog")),
                                  message="the page did not ask for the admin token")
            dialog.find_element(By.ID, "token-input").send_keys(ADMIN_TOKEN)
            dialog.find_element(By.ID, "token-ok").click()
            client = browser.wait(_text_of(browser, f'tr[data-client="{alice_id}"]'),
                                  message="the connected client is not shown")
            video = browser.wait(_text_of(browser, 'tr[data-stream="live/cam"] td.video'),
                                 message="the live stream is not shown")
            audio = browser.driver.find_element(By.CSS_SELECTOR, 'tr[data-stream="live/cam"] td.audio').text
            failing = browser.wait(_text_of(browser, 'tr[data-route="broken/whoami"] td.health'),
                                   message="the failing route is not shown")
            healthy = browser.driver.find_element(By.CSS_SELECTOR, 'tr[data-route="shop/getUser"] td.health')
            summary = browser.driver.find_element(By.ID, "summary").text
            return client, video, audio, failing, healthy.text, healthy.get_attribute("class"), summary

        client, video, audio, failing, healthy, healthy_class, summary = yield deferToThread(load_and_log_in)
        self.assertIn("127.0.0.1:", client)
        self.assertIn("shop", client)
        self.assertIn("http://example.com/<b>page</b>", client)     # shown as text, not markup
        self.assertIn("AVC", video)
        self.assertIn("320x240", video)
        self.assertIn("AAC", audio)
        self.assertIn("44100 Hz", audio)
        self.assertTrue(failing.startswith("failing"), failing)
        self.assertEqual((healthy, healthy_class), ("ok", "health health-ok"))
        self.assertIn("clients", summary)
        path = yield deferToThread(browser.screenshot, "status-page.png")
        print(f"status page screenshot: {path}")
        errors = yield deferToThread(browser.console_errors)
        self.assertEqual(errors, [])

        def disconnect():
            # Forget the token: the button must ask for it.
            browser.driver.execute_script("sessionStorage.clear()")
            button = browser.driver.find_element(By.CSS_SELECTOR, f'tr[data-client="{alice_id}"] button')
            button.click()
            dialog = browser.wait(EC.visibility_of_element_located((By.ID, "token-dialog")),
                                  message="the disconnect button did not ask for the token")
            dialog.find_element(By.ID, "token-input").send_keys(ADMIN_TOKEN)
            dialog.find_element(By.ID, "token-ok").click()
            browser.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-client="{alice_id}"]'),
                         message="the client stayed in the table")

        yield deferToThread(disconnect)
        reason = yield alice.closed
        self.assertIsNotNone(reason)
        code, page = yield self.api("clients?app=shop")
        self.assertEqual(page["total"], 0)
        errors = yield deferToThread(browser.console_errors)
        self.assertEqual(errors, [])


class ExamplesPageTests(OperationsMixin, TestCase):
    """/examples/: the index of the bundled examples loads in the browser and every link resolves."""

    publish = False
    timeout = 60

    def setUp(self):
        require_browser()
        return super().setUp()

    @inlineCallbacks
    def test_examples_index(self):
        from selenium.webdriver.common.by import By

        browser = yield deferToThread(Browser)
        self.addCleanup(deferToThread, browser.close)

        def load():
            browser.driver.get(f"http://127.0.0.1:{self.http_port}/examples/")
            headings = [h.text for h in browser.driver.find_elements(By.CSS_SELECTOR, "h2")]
            commands = [c.text for c in browser.driver.find_elements(By.CSS_SELECTOR, "pre code")]
            links = [a.get_attribute("href") for a in browser.driver.find_elements(By.CSS_SELECTOR, "a[href]")]
            ids = {e.get_attribute("id") for e in browser.driver.find_elements(By.CSS_SELECTOR, "[id]")}
            missing = [link for link in links if "#" in link and link.split("#", 1)[1] not in ids]
            return browser.driver.title, headings, commands, links, missing

        title, headings, commands, links, missing_anchors = yield deferToThread(load)
        self.assertEqual(missing_anchors, [])
        self.assertTrue(any(link.endswith("#src-gateway") for link in links))   # a walkthrough links its sources
        self.assertEqual(title, "fmspy-gateway examples")
        self.assertTrue(any("gateway" in h for h in headings), headings)
        self.assertTrue(any("hello_app" in h for h in headings), headings)
        self.assertTrue(any("twistd -n fmspy-gateway" in c for c in commands))   # how to run each
        sources = [link for link in links if "/examples/" in link and not link.endswith("/examples/")]
        for expected in ("gateway/backend.py", "gateway/routes.cfg", "hello_app/hello_app.py",
                         "recording/fmspy.cfg"):
            self.assertTrue(any(link.endswith(expected) for link in sources), expected)
        for link in links:
            if not link.startswith(f"http://127.0.0.1:{self.http_port}/"):
                continue
            path = link.split(str(self.http_port), 1)[1].split("#")[0]
            code, headers, body = yield self.http(path, token=None)
            self.assertEqual(code, 200, link)
            if path.endswith((".py", ".cfg")):
                self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"), link)
        code, _, _ = yield self.http("/examples/gateway/__pycache__/", token=None)
        self.assertEqual(code, 404)
        errors = yield deferToThread(browser.console_errors)
        self.assertEqual(errors, [])
