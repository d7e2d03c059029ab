# App-side latency probe for `moe-edge bench serve`, driven by the bench
# (never by the daemon). One paho-mqtt 2.x client, as an app would use it:
# default socket options (paho leaves Nagle on), QoS 1, one connection that
# publishes requests and receives replies. Requests go one at a time; for each
# the probe records when the first reply message and the final one arrived.
#
#   python3 paho_probe.py '{"port": 1883, "proto": 5, "mode": "daemon", ...}'
#
# mode "echo": publish to a topic this client subscribes to (broker hop only).
# mode "daemon": publish an OpenAI chat request to `topic`; MQTT 5 names the
# reply topic in Response Topic + Correlation Data, MQTT 3.1.1 in the body's
# `reply_topic` + `id`. Prints one JSON object on stdout.
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

cfg = json.loads(sys.argv[1])
v5 = cfg["proto"] == 5
reply_topic = cfg.get("reply_topic", "probe/%d/replies" % time.time_ns())
lock = threading.Lock()
state = {"corr": None, "first": None, "final": None, "engine": None, "error": None}
got_final = threading.Event()
subscribed = threading.Event()


def is_final(v):
    return "error" in v or v.get("object") in ("chat.completion", "chat.completion.done")


def on_message(c, u, m):
    now = time.perf_counter()
    if v5:
        corr = getattr(m.properties, "CorrelationData", b"").decode()
    else:
        corr = None
    try:
        v = json.loads(m.payload)
    except ValueError:
        v = {}
    if not v5:
        corr = v.get("request_id", v.get("echo"))
    with lock:
        if corr != state["corr"]:
            return
        if state["first"] is None:
            state["first"] = now
        if cfg["mode"] == "echo" or is_final(v):
            state["final"] = now
            if "error" in v:
                state["error"] = v["error"].get("code")
            x = v.get("x_moe_edge") or {}
            t = (x.get("timings_ms") or {}).get("total")
            if t is not None:
                state["engine"] = t
            got_final.set()
        elif v.get("object") == "chat.completion.chunk":
            x = v.get("x_moe_edge") or {}
            t = (x.get("timings_ms") or {}).get("total")
            if t is not None:
                state["engine"] = t


def on_subscribe(c, u, mid, rc, props=None):
    subscribed.set()


proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe-%d" % time.time_ns(), protocol=proto)
c.on_message = on_message
c.on_subscribe = on_subscribe
c.connect(cfg.get("host", "127.0.0.1"), cfg["port"])
c.loop_start()
c.subscribe(reply_topic, qos=1)
if not subscribed.wait(10):
    print(json.dumps({"fatal": "no SUBACK in 10 s"}))
    sys.exit(2)

out = {"first_ms": [], "final_ms": [], "engine_ms": [], "errors": {}, "lost": 0}
total = cfg["warmup"] + cfg["count"]
for i in range(total):
    corr = "probe-%d" % i
    with lock:
        state.update(corr=corr, first=None, final=None, engine=None, error=None)
    got_final.clear()
    if cfg["mode"] == "echo":
        topic = reply_topic
        payload = json.dumps({"echo": corr, "pad": "x" * cfg.get("pad", 200)})
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = corr.encode()
    else:
        topic = cfg["topic"]
        body = dict(cfg["body"]) if isinstance(cfg["body"], dict) else None
        props = None
        if v5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = reply_topic
            props.CorrelationData = corr.encode()
        elif body is not None:
            body["reply_topic"] = reply_topic
            body["id"] = corr
        payload = json.dumps(body) if body is not None else cfg["raw"]
    t0 = time.perf_counter()
    c.publish(topic, payload, qos=1, properties=props)
    if not got_final.wait(cfg.get("timeout_s", 30)):
        out["lost"] += 1
        continue
    with lock:
        first, final, engine, error = state["first"], state["final"], state["engine"], state["error"]
    if i < cfg["warmup"]:
        continue
    out["first_ms"].append((first - t0) * 1e3)
    out["final_ms"].append((final - t0) * 1e3)
    if engine is not None:
        out["engine_ms"].append(engine)
    if error is not None:
        out["errors"][error] = out["errors"].get(error, 0) + 1
    time.sleep(cfg.get("gap_s", 0.02))
c.loop_stop()
c.disconnect()
print(json.dumps(out))
