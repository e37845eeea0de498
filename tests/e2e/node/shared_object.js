// npm rtmp-client's SharedObject against our server, for tests/e2e/test_shared_objects_node.py.
// Usage: node shared_object.js URL NAME. Prints one JSON line per thing seen; reads one JSON command a line
// on stdin: {"set": [key, value]} (setProperty; a null value deletes) or {"close": true}.
const readline = require('readline');
const { NetConnection, SharedObject } = require('rtmp-client');

const [url, name] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + '\n');
const nc = new NetConnection();
let so = null;

nc.onStatus = (info) => {
	out({ 'connection': info.code });
	if (info.code === 'NetConnection.Connect.Success' && so === null) {
		so = SharedObject.get(name, false, nc);
		so.onStatus = (status) => out({ 'status': status.code, 'level': status.level });
		so.onSync = (list) => out({ 'sync': list, 'version': so.version });
	}
};
nc.connect(url);

readline.createInterface({ 'input': process.stdin }).on('line', (line) => {
	const command = JSON.parse(line);
	if (command.set) {
		so.setProperty(command.set[0], command.set[1]);
	}
	else if (command.close) {
		so.close();
		nc.close();
		process.exit(0);
	}
});
