"""Interop check: python-tuf's ngclient refreshes against `hub serve` and
downloads one target. Also checks that the server refuses writes and, with
--cafile, that it speaks HTTPS with the given certificate.

usage: ngclient_fetch.py BASE_URL ROOT_JSON TARGET OUTDIR [--cafile PEM]
prints one JSON line: {"path", "length", "sha256", "post_status"}
"""
import hashlib
import json
import os
import shutil
import ssl
import sys
import urllib.error
import urllib.request

from tuf.ngclient import Updater


def main() -> None:
    base, root, target, outdir = sys.argv[1:5]
    cafile = sys.argv[6] if len(sys.argv) > 6 and sys.argv[5] == "--cafile" else None
    if cafile:
        # ngclient's default fetcher honours the standard CA bundle variables.
        os.environ["REQUESTS_CA_BUNDLE"] = cafile
        os.environ["SSL_CERT_FILE"] = cafile
    meta = os.path.join(outdir, "metadata")
    os.makedirs(meta, exist_ok=True)
    shutil.copy(root, os.path.join(meta, "root.json"))
    updater = Updater(
        metadata_dir=meta,
        metadata_base_url=base + "metadata/",
        target_base_url=base + "targets/",
        target_dir=outdir,
    )
    updater.refresh()
    info = updater.get_targetinfo(target)
    if info is None:
        raise SystemExit(f"target {target} not found by ngclient")
    path = updater.download_target(info)
    data = open(path, "rb").read()

    context = ssl.create_default_context(cafile=cafile) if cafile else None
    req = urllib.request.Request(base + "metadata/timestamp.json", data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, context=context)
        post_status = 200
    except urllib.error.HTTPError as e:
        post_status = e.code
    print(json.dumps({
        "path": path,
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "post_status": post_status,
    }))


if __name__ == "__main__":
    main()
