"""The official Python SDK's long-connection client with a no-op handler.

Run by the stream benchmark as its own process, so its CPU time and memory
are read from /proc like lark-service's. Settings come from the same
variables the service reads: APP_ID, APP_SECRET, LARK_DOMAIN.
"""

import os
import sys

try:
    import lark_oapi as lark
except ImportError as e:  # the benchmark reports this and fails
    sys.exit(f"lark-oapi is not installed ({e}); run bench/peers/setup.sh")


def noop(_event):
    return None


def main():
    handler = (
        lark.EventDispatcherHandler.builder("", "")
        .register_p2_im_message_receive_v1(noop)
        .build()
    )
    client = lark.ws.Client(
        os.environ["APP_ID"],
        os.environ["APP_SECRET"],
        event_handler=handler,
        domain=os.environ["LARK_DOMAIN"],
        log_level=lark.LogLevel.ERROR,
    )
    client.start()


if __name__ == "__main__":
    main()
