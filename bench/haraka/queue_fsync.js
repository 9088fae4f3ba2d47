// Haraka queue plugin for the bench: each message to its own file, written and
// fdatasync'ed before the 250 (the durability smtp-receive and Postfix give),
// then left there (the bench removes the directory). Bench only.
const fs = require('node:fs');
const path = require('node:path');

let seq = 0;

exports.register = function () {
  this.dir = process.env.HARAKA_BENCH_QUEUE;
  if (!this.dir) throw new Error('queue_fsync: HARAKA_BENCH_QUEUE is not set');
  fs.mkdirSync(this.dir, { recursive: true });
};

// no reverse DNS (the bench runs smtp-receive with --no-reverse-dns; loopback has no PTR here)
exports.hook_lookup_rdns = function (next) {
  next(OK, 'localhost');
};

exports.hook_queue = function (next, connection) {
  const file = path.join(this.dir, `${process.pid}-${++seq}.eml`);
  connection.transaction.message_stream.get_data((buf) => {
    fs.open(file, 'w', (err, fd) => {
      if (err) return next(DENYSOFT, 'queue: cannot create file');
      fs.write(fd, buf, 0, buf.length, 0, (werr) => {
        fs.fdatasync(fd, (serr) => {
          fs.close(fd, () => {
            if (werr || serr) return next(DENYSOFT, 'queue: write failed');
            next(OK, 'Ok: queued');
          });
        });
      });
    });
  });
};
