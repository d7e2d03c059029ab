"""Compositional phrasings for the training split only.

The hand-written templates in gen_corpus.py are few per tool (15-30), and a quarter of them are held out
for the test split, so a model that sees only the other three quarters meets many verbs, nouns and
indirect wishes for the first time at test time (and on a user's hand-written request). This module
multiplies the training phrasings by composing them from parts: each frame is a pattern with
alternatives, "(set|put) the (fan|blower) to {lvl}", expanded to every combination. Frames use the same
slots and fixed-argument conventions as gen_corpus.py (e.g. "a bit warmer" is 24 degC, "dim" is 30 %).

Only the training split samples these. The test split keeps drawing from the held-out hand-written
templates, so its figure stays comparable with earlier checkpoints and is not made easier by frames that
were written after its failures were read.
"""

import re

_GROUP = re.compile(r"\(([^()]*)\)")


def expand(pattern):
    """All strings produced by choosing one alternative in every (a|b|c) group; "()" groups with an
    empty alternative make a part optional. Double spaces left by empty alternatives are squeezed."""
    m = _GROUP.search(pattern)
    if not m:
        p = re.sub(r" {2,}", " ", pattern).strip()
        return [p.replace(" ,", ",").replace(" ?", "?").replace(" :", ":")]
    out = []
    for alt in m.group(1).split("|"):
        out.extend(expand(pattern[:m.start()] + alt + pattern[m.end():]))
    return out


def F(pattern, fixed=None, kind="cmd"):
    return [(p, dict(fixed or {}), kind) for p in expand(pattern)]


def _build(spec):
    """tool -> its expansions, each once (the first frame that produces it keeps it); every entry is
    (pattern, fixed arguments, kind, frame number within the tool)."""
    out = {}
    for tool, frames in spec.items():
        seen, lst = set(), []
        for i, frame in enumerate(frames):
            for t in frame:
                if t[0] not in seen:
                    seen.add(t[0])
                    lst.append(t + (i,))
        out[tool] = lst
    return out


EN_G = _build({
    "set_temperature": [
        F("(set|change|adjust|put|make) (the temperature|the temp|the climate|the AC|the heating|the air conditioning) (on|for|in) {zone} to {temp}"),
        F("(set|change|adjust|put) {zone} (temperature|temp|climate) to {temp}"),
        F("(can you|could you|please) (set|make|keep) {zone} (at|to) {temp}", kind="free"),
        F("(I'd like|I want|we want|I need) {zone} (at|to be) {temp}", kind="free"),
        F("(turn|bring) the (temperature|temp) (up|down) to {temp} (on|for) {zone}"),
        F("{temp} (on|for|in) {zone}", kind="free"),
        F("(set|make) it {temp}"),
        F("(it's|it is|I'm|I am) (a bit|a little|kind of|really|so) (cold|chilly) (on my side|over here)", {"zone": "driver", "celsius": 24}, "free"),
        F("(it's|it is|I'm|I am) (a bit|a little|kind of|really|so) (hot|warm|stuffy) (on my side|over here)", {"zone": "driver", "celsius": 20}, "free"),
        F("(warm|heat) (up|) (my side|the driver side|the driver's side) (a bit|a little|)", {"zone": "driver", "celsius": 24}),
        F("(cool|chill) (down|) (my side|the driver side|the driver's side) (a bit|a little|)", {"zone": "driver", "celsius": 20}),
        F("(warm|heat) (up|) (the passenger side) (a bit|a little|)", {"zone": "passenger", "celsius": 24}),
        F("(cool|chill) (down|) (the passenger side) (a bit|a little|)", {"zone": "passenger", "celsius": 20}),
        F("(warm|heat) (up|) (the back|the rear seats|the back seats) (a bit|a little|)", {"zone": "rear", "celsius": 24}),
        F("(cool|chill) (down|) (the back|the rear seats|the back seats) (a bit|a little|)", {"zone": "rear", "celsius": 20}),
        F("(warm|heat) (up|) (the car|the cabin|everything|the whole car) (a bit|a little|)", {"zone": "all", "celsius": 24}),
        F("(cool|chill) (down|) (the car|the cabin|everything|the whole car) (a bit|a little|)", {"zone": "all", "celsius": 20}),
        F("(my passenger|the person next to me|my wife|my husband|my friend) (is|feels|says she's|says he's) (cold|chilly)", {"zone": "passenger", "celsius": 24}, "free"),
        F("(my passenger|the person next to me|my wife|my husband|my friend) (is|feels|says she's|says he's) (hot|too warm)", {"zone": "passenger", "celsius": 20}, "free"),
        F("(the kids|the children|the people|everyone) in the (back|rear) (are|feel) (cold|chilly)", {"zone": "rear", "celsius": 24}, "free"),
        F("(the kids|the children|the people|everyone) in the (back|rear) (are|feel) (hot|too warm)", {"zone": "rear", "celsius": 20}, "free"),
        F("(I'm|I am) (freezing|frozen|shivering)", {"zone": "driver", "celsius": 26}, "free"),
        F("(it's|it is) (freezing|ice cold) in (the whole car|here|the cabin)", {"zone": "all", "celsius": 26}, "free"),
        F("(it's|it is) (boiling|scorching|way too hot|like an oven) in (the whole car|here|the cabin)", {"zone": "all", "celsius": 18}, "free"),
    ],
    "set_fan_speed": [
        F("(set|put|turn|change|switch|adjust) (the fan|the blower|the fan speed|the ventilation|the air flow|the airflow) (to|at|on) (level|speed|) {lvl}"),
        F("(fan|blower|ventilation|air flow) (to|at|on) (level|speed|) {lvl}", kind="free"),
        F("(turn|bring) the (fan|blower) (up|down) to {lvl}"),
        F("(turn|switch|shut) (off|down) the (fan|blower|ventilation)", {"level": 0}),
        F("(turn|switch) the (fan|blower|ventilation) off", {"level": 0}),
        F("(stop|kill) the (fan|blower|air flow)", {"level": 0}),
        F("(max|full|maximum|highest) (fan|blower|fan speed)", {"level": 7}, "free"),
        F("(turn|crank|put) the (fan|blower) (all the way up|to max|to the max|on high)", {"level": 7}),
        F("(min|minimum|lowest|slowest) (fan|blower|fan speed|fan setting)", {"level": 1}, "free"),
        F("(turn|put) the (fan|blower) (all the way down|to the lowest setting|to minimum|on low)", {"level": 1}),
        F("(the fan|the blower|the air) is too (loud|noisy|strong), (turn it|set it) (down|) to {lvl}", kind="free"),
    ],
    "set_seat_heater": [
        F("(set|put|turn|change|switch) (the seat heater|the seat heating|the heated seat|the seat warmer) (for|on) {seat} (to|at|on) (level|) {lvl}"),
        F("(set|put|turn) {seat} (heater|heating|warmer) (to|at|on) (level|) {lvl}"),
        F("(heat|warm) {seat} (to|at) level {lvl}"),
        F("(turn|switch) on the (seat heater|seat heating|heated seat) (for|on) {seat}", {"level": 2}),
        F("(turn|switch) (off|) the (seat heater|seat heating|heated seat|seat warmer) (for|on) {seat} (off|)", {"level": 0}),
        F("(heat|warm) {seat} on (high|max|full|the highest setting)", {"level": 3}),
        F("(heat|warm) {seat} on (low|the lowest setting|a low setting)", {"level": 1}),
        F("(heat|warm) {seat} on (medium|the middle setting)", {"level": 2}),
        F("(my seat|my back|my butt|my seat cushion) (is|feels) (cold|freezing|chilly)", {"seat": "driver", "level": 2}, "free"),
        F("(warm|heat) up (my seat|the driver's seat|my chair)", {"seat": "driver", "level": 2}),
        F("(warm|heat) up the (passenger seat|seat next to me|front passenger seat)", {"seat": "passenger", "level": 2}),
        F("(my seat|my back) (is|feels) (too hot|burning|way too warm)", {"seat": "driver", "level": 0}, "free"),
        F("(my passenger|the passenger|my wife|my husband) (wants|would like|needs) a (warm|heated|warmer) seat", {"seat": "passenger", "level": 2}, "free"),
    ],
    "set_window": [
        F("(open|lower|roll down|put down|bring down) {window} (to|) {pct}"),
        F("(set|put|move) {window} (to|at) {pct} (open|)"),
        F("(open|lower|roll down) {window} (halfway|half way|half open|to half)", {"percent": 50}),
        F("(close|shut|roll up|raise|put up) {window} (all the way|completely|fully|)", {"percent": 0}),
        F("(open|roll down|lower) {window} (all the way|completely|fully|entirely)", {"percent": 100}),
        F("(crack|open|lower) {window} (a bit|a little|slightly|a crack|an inch)", {"percent": 20}),
        F("(it's|it is) (stuffy|muggy|too stuffy) in here", {"window": "all", "percent": 20}, "free"),
        F("(I need|I want|give me|let in) some (fresh air|air)", {"window": "driver", "percent": 20}, "free"),
        F("(it's raining|it started raining|it's pouring|rain is coming in), (close|shut) the windows", {"window": "all", "percent": 0}, "free"),
    ],
    "set_drive_mode": [
        F("(switch|change|go|put the car|set the car) (to|into|in) {mode} (mode|)"),
        F("(set|change|switch) the (drive|driving) mode to {mode}"),
        F("(use|activate|enable|engage|select) {mode} (mode|driving mode|drive mode)"),
        F("{mode} (mode|driving|drive mode) (please|now|)", kind="free"),
        F("(I want to|let's|help me) (save|conserve) (fuel|gas|energy|battery|power)", {"mode": "eco"}, "free"),
        F("(I want|give me) (better|more) (mileage|range|efficiency|fuel economy)", {"mode": "eco"}, "free"),
        F("(I want|give me|I need) (more power|more speed|more acceleration|a sportier feel|some punch)", {"mode": "sport"}, "free"),
        F("(let's|I want to) (have some fun|drive fast|drive sporty|go faster)", {"mode": "sport"}, "free"),
        F("(make|keep) the ride (smoother|softer|more comfortable|relaxed)", {"mode": "comfort"}),
        F("(I want|give me) a (smooth|soft|comfortable|relaxed|gentle) ride", {"mode": "comfort"}, "free"),
    ],
    "set_lights": [
        F("(turn|switch|put|set) (the headlights|the lights|the headlamps|the car lights) {state}"),
        F("(headlights|lights|headlamps) {state} (please|now|)", kind="free"),
        F("(turn|switch) on the (headlights|lights|headlamps|high beams)", {"state": "on"}),
        F("(turn|switch|shut) off the (headlights|lights|headlamps)", {"state": "off"}),
        F("(set|put|leave) the (headlights|lights|headlamps) (on|to) (auto|automatic|automatic mode)", {"state": "auto"}),
        F("(it's getting dark|it's dark out|it's pitch black|night is falling|I can barely see)", {"state": "on"}, "free"),
        F("(we're|we are) (entering|going into|driving into) a tunnel", {"state": "on"}, "free"),
        F("(let the car|let the sensor|let it) (decide|handle|control) the (headlights|lights)", {"state": "auto"}),
    ],
    "find_nearby": [
        F("(find|search for|look for|locate|show me|get me) (a|the nearest|the closest|a nearby) {cat} (nearby|near me|around here|close by|)"),
        F("(where's|where is|is there) (a|the nearest|the closest) {cat} (nearby|near here|around here|)?", kind="free"),
        F("(I need|I'm looking for|we need) a {cat} (nearby|around here|)", kind="free"),
        F("(any|are there any) {cat}s (nearby|near here|around)?", kind="free"),
        F("(I'm|we're) (low on|running low on|almost out of) (battery|charge|power)", {"category": "charging_station"}, "free"),
        F("(the car|the battery) (needs|is asking for) (charging|a charge|to charge)", {"category": "charging_station"}, "free"),
        F("(I'm|we're) (low on|running low on|almost out of|running out of) (gas|fuel|petrol)", {"category": "gas_station"}, "free"),
        F("(the tank is|the fuel gauge is) (almost empty|on empty|low)", {"category": "gas_station"}, "free"),
        F("(I'm|we're) (hungry|starving)", {"category": "restaurant"}, "free"),
        F("(let's|we should|I want to) (grab|get|have) (lunch|dinner|a meal|something to eat)", {"category": "restaurant"}, "free"),
        F("(I need|I could use|I want|let's get) (a coffee|some coffee|an espresso|a latte)", {"category": "cafe"}, "free"),
        F("(I need to|I have to|I really need to|the kids need to) (pee|use the bathroom|go to the toilet|use the restroom)", {"category": "restroom"}, "free"),
        F("(where can I|where do I|I need to|help me) (park|find parking|leave the car)", {"category": "parking"}, "free"),
        F("(I don't feel well|I feel sick|someone is hurt|I need a doctor|I'm injured)", {"category": "hospital"}, "free"),
        F("(I need to|let's|I want to) (grab|buy|pick up) (some snacks|a drink|some water|a snack)", {"category": "convenience_store"}, "free"),
    ],
    "navigate_to": [
        F("(navigate|drive|take me|get me|bring me|guide me|route me|head) to {place}"),
        F("(start|begin|set up) (navigation|the route|directions|guidance) to {place}"),
        F("set {place} as (the|my) (destination|goal)"),
        F("make {place} (my|the) (destination|next stop)"),
        F("(directions|route|the way|the fastest route) to {place} (please|)", kind="free"),
        F("(how do I get|what's the way|how can I get) to {place}?", kind="free"),
        F("(I'm going|I'm heading|we're going|we need to go|I want to go) to {place}", kind="free"),
        F("(walk me|guide me|take me|show me the way) to {place} (on foot|walking|by walking)", {"mode": "walk"}),
        F("(walking|pedestrian|on foot) (directions|route|navigation) to {place}", {"mode": "walk"}, "free"),
        F("(I want to|I'd like to|let's) walk to {place}", {"mode": "walk"}, "free"),
        F("(drive me|take me|get me) to {place} by car", {"mode": "drive"}),
        F("(driving|car) (directions|route|navigation) to {place}", {"mode": "drive"}, "free"),
    ],
    "play_media": [
        F("(play|put on|start|stream|queue up|turn on|bring up|shuffle|fire up) {media}"),
        F("(I want to|I'd like to|let's|can I) (hear|listen to) {media}", kind="free"),
        F("(I'm in the mood for|how about|what about) {media}", kind="free"),
        F("(play|put on) {media} (for me|please|now|on the speakers|in the car)"),
    ],
    "media_control": [
        F("(pause|stop|hold) (the music|the song|the track|playback|this|it) (for a moment|for a second|)", {"action": "pause"}),
        F("(hit|press) pause", {"action": "pause"}),
        F("(pause|stop) (please|now|)", {"action": "pause"}, "free"),
        F("(resume|continue|restart|unpause) (the music|the song|playback|playing|it|)", {"action": "resume"}),
        F("(keep|carry on|go on) playing", {"action": "resume"}),
        F("(play|start) (the music|the song|it) again", {"action": "resume"}),
        F("(skip|next) (this song|this track|the song|the track|this one|)", {"action": "next"}),
        F("(go to|play|jump to|skip to) the next (song|track|one)", {"action": "next"}),
        F("(I don't like|I hate|I'm tired of|not a fan of) this (song|track|one)", {"action": "next"}, "free"),
        F("(go back|back up|return) (to the previous song|a song|a track|to the last track|to the previous track|one song)", {"action": "previous"}),
        F("(play|go to) the (previous|last) (song|track|one) (again|)", {"action": "previous"}),
        F("(previous|last) (song|track) (please|)", {"action": "previous"}, "free"),
    ],
    "set_volume": [
        F("(set|turn|change|put|adjust|bring|make) the (volume|sound|audio|sound level|music volume) (to|at) {pct}"),
        F("(volume|sound|audio) (to|at) {pct}", kind="free"),
        F("(turn|bring) the (volume|sound|music) (up|down) to {pct}"),
        F("(raise|lower|increase|decrease|reduce) the (volume|sound) to {pct}"),
        F("(mute|silence) (the audio|the sound|the music|the car|everything|it)", {"level": 0}),
        F("(volume|sound) (off|to zero)", {"level": 0}, "free"),
        F("(turn|crank|pump) (it|the volume|the music) (all the way up|to the max|up to max)", {"level": 100}),
        F("(max|maximum|full|loudest) (volume|sound)", {"level": 100}, "free"),
    ],
    "call_contact": [
        F("(call|phone|dial|ring|ring up|video call|voice call) {name} (please|now|for me|)"),
        F("(give|place|make) {name} a (call|phone call|ring)"),
        F("(make|place|start) a (call|phone call|voice call) (to|with) {name}"),
        F("(get|put) {name} on the (phone|line)"),
        F("(I need|I want|I'd like|I have) to (talk to|speak to|speak with|call|phone|reach) {name}", kind="free"),
        F("(connect me|patch me through|put me through) to {name}"),
        F("(can you|could you|would you) (call|ring|phone|dial) {name}?", kind="free"),
    ],
    "send_message": [
        F("(text|message|msg|ping|send a text to|send a message to|write to|drop a line to) {name} (saying|that says|with|:|that) {text}"),
        F("(send|shoot|drop|write) {name} a (text|message|quick message|note|line) (saying|that says|:) {text}"),
        F("tell {name} (that|) {text}"),
        F("let {name} know (that|) {text}"),
        F("(send|text) \"{text}\" to {name}"),
        F("(reply|respond|answer) to {name} (with|saying|:) {text}"),
        F("(a message|a text|message|text) (for|to) {name} (saying|:) {text}", kind="free"),
    ],
    "get_weather": [
        F("(what's|what is|how's|how is) the weather (in|at|for) {place} {day}?", kind="free"),
        F("(what's|what is|how's|how is) the weather {day}?", kind="free"),
        F("(check|show me|give me|get|tell me) the (weather|forecast|weather forecast) (in|for) {place} {day}"),
        F("(check|show me|give me|get|tell me) the (weather|forecast|weather forecast) {day}"),
        F("(will it|is it going to) (rain|snow|be sunny|be cold|be hot|be windy) (in|at) {place} {day}?", kind="free"),
        F("(will it|is it going to) (rain|snow|be sunny|be cold|be hot|be windy) {day}?", kind="free"),
        F("(do I need|should I take|should I bring) (an umbrella|a jacket|a coat|sunscreen) {day}?", kind="free"),
        F("(weather|forecast|temperature outside) (in|for) {place} {day}", kind="free"),
    ],
    "set_timer": [
        F("(set|start|make|create) a (timer|countdown) (for|of) {min}"),
        F("(set|start) the (timer|countdown) (to|for) {min}"),
        F("(timer|countdown) (for|of|) {min} (please|)", kind="free"),
        F("(start|give me|set) a {min} (timer|countdown)"),
        F("(let me know|tell me|alert me|ping me|buzz me|wake me up) (in|after) {min}"),
        F("(I'm making|I'm cooking|I'm having) (instant noodles|cup noodles|a cup of ramen)", {"minutes": 3}, "free"),
    ],
    "set_reminder": [
        F("(remind me|set a reminder|create a reminder|make a reminder|add a reminder) (to|that I should|that I need to) {todo} at {time}"),
        F("(at|around) {time} (remind me|tell me|ping me|alert me|nudge me) to {todo}"),
        F("(remind me|please remind me|don't let me forget) at {time} to {todo}"),
        F("(remind me|please remind me|don't let me forget) to {todo} at {time}"),
        F("(I have to|I need to|I must|I should) {todo} at {time}(, remind me|, don't let me forget| so remind me)", kind="free"),
        F("(reminder|a reminder|new reminder) (at|for) {time}: {todo}", kind="free"),
        F("(reminder|a reminder|new reminder): {todo} at {time}", kind="free"),
    ],
    "translate": [
        F("(translate|put|turn|convert|render) \"{phrase}\" (to|into|in) {lang}"),
        F("(how do you|how would you|how do I|how would I|how can I) say \"{phrase}\" in {lang}?", kind="free"),
        F("(what is|what's) \"{phrase}\" in {lang}?", kind="free"),
        F("(what's|what is|give me|tell me) the {lang} (for|word for|phrase for|translation of) \"{phrase}\"", kind="free"),
        F("(translate|say|put) (this|it) (to|into|in) {lang}: {phrase}"),
        F("(I need|I want|help me with) \"{phrase}\" in {lang}", kind="free"),
        F("(help me|I want to|I'd like to|teach me to) say \"{phrase}\" in {lang}"),
    ],
    "capture": [
        F("(take|snap|grab|shoot|get) a (photo|picture|pic|snapshot|shot) (of this|of that|now|)", {"kind": "photo"}),
        F("(photograph|capture|snap) (this|that|this view|the view|this moment)", {"kind": "photo"}),
        F("(photo|picture|snapshot) (please|now|)", {"kind": "photo"}, "free"),
        F("(record|film|shoot|capture|take) a (video|clip|video clip) (of this|of that|now|)", {"kind": "video"}),
        F("(start|begin) (recording|filming|a video|video recording)", {"kind": "video"}),
        F("(record|film|shoot|capture) (this|it|that) for {sec}", {"kind": "video"}),
        F("(record|film|shoot|take|make) a {sec} (video|clip)", {"kind": "video"}),
    ],
    "read_notifications": [
        F("(read|read out|read me|tell me|show me) (my|the) (notifications|alerts|new notifications|latest notifications)", {"count": 5}),
        F("(read|read out|read me|tell me|show me) (my|the) (last|latest|newest|top|most recent) {cnt} (notifications|alerts|messages)"),
        F("(read|read out|read me|tell me|show me) (my|the) {app} (notifications|alerts|messages|updates)", {"count": 5}),
        F("(read|read out|read me|tell me|show me) (my|the) (last|latest|newest|top) {cnt} {app} (notifications|alerts|messages)"),
        F("(read|read out|read me) (the|my) (last|latest|newest|most recent) (notification|alert)", {"count": 1}),
        F("(read|read out|read me) (the|my) (last|latest|newest|most recent) {app} (notification|message)", {"count": 1}),
        F("(any|anything|what's) new (on|from|in) {app}?", {"count": 5}, "free"),
        F("(any|do I have any|are there) (new notifications|notifications|new alerts|new messages)?", {"count": 5}, "free"),
        F("(check|look at|go through) (my|the) {app} (notifications|alerts|messages)", {"count": 5}),
    ],
    "set_display_brightness": [
        F("(set|turn|change|put|adjust|make) the (brightness|screen brightness|display brightness|display|screen) (to|at) {pct}"),
        F("(brightness|screen|display) (to|at) {pct}", kind="free"),
        F("(dim|darken) the (display|screen|glasses|lenses) (a bit|a little|)", {"percent": 30}),
        F("(the display|the screen|it) (is|looks) (too bright|blinding|way too bright|glaring)", {"percent": 30}, "free"),
        F("(max|maximum|full|highest) (brightness|screen brightness)", {"percent": 100}, "free"),
        F("(brighten|light up) the (display|screen) (all the way|fully|to the max)", {"percent": 100}),
        F("(I can't see|I can barely see|I can't read) the (display|screen) (in the sun|in this sunlight|in bright light|outside)", {"percent": 100}, "free"),
        F("(the display|the screen) is too (dark|dim) (in the sun|outside|in this light)", {"percent": 100}, "free"),
        F("(turn|bring) the (display|screen|brightness) all the way down", {"percent": 0}),
    ],
})

JA_G = _build({
    "set_temperature": [
        F("{zone}(の温度|の設定温度|のエアコン|の空調|)を{temp}に(して|設定して|変えて|合わせて|上げて|下げて)"),
        F("(温度|エアコン|空調|設定温度)を{temp}に(して|設定して|変えて|合わせて)"),
        F("{zone}(は|を){temp}(で|に)(お願い|頼む|よろしく)", kind="free"),
        F("{temp}(で|に)(お願い|頼む)、{zone}", kind="free"),
        F("(ちょっと|少し|すごく|めっちゃ|なんか)(寒い|肌寒い|冷える)(な|ね|んだけど|)", {"zone": "driver", "celsius": 24}, "free"),
        F("(ちょっと|少し|すごく|めっちゃ|なんか)(暑い|蒸し暑い|暑苦しい)(な|ね|んだけど|)", {"zone": "driver", "celsius": 20}, "free"),
        F("(運転席|私の席|自分の席)(を|)(少し|ちょっと|)(暖かくして|温めて)", {"zone": "driver", "celsius": 24}),
        F("(運転席|私の席|自分の席)(を|)(少し|ちょっと|)(涼しくして|冷やして)", {"zone": "driver", "celsius": 20}),
        F("(助手席|助手席側)(を|)(少し|ちょっと|)(暖かくして|温めて)", {"zone": "passenger", "celsius": 24}),
        F("(助手席|助手席側)(を|)(少し|ちょっと|)(涼しくして|冷やして)", {"zone": "passenger", "celsius": 20}),
        F("(後部座席|後ろの席|後席)(を|)(少し|ちょっと|)(暖かくして|温めて)", {"zone": "rear", "celsius": 24}),
        F("(後部座席|後ろの席|後席)(を|)(少し|ちょっと|)(涼しくして|冷やして)", {"zone": "rear", "celsius": 20}),
        F("(車内|車の中|全体)(を|)(少し|ちょっと|)(暖かくして|温めて)", {"zone": "all", "celsius": 24}),
        F("(車内|車の中|全体)(を|)(少し|ちょっと|)(涼しくして|冷やして)", {"zone": "all", "celsius": 20}),
        F("(助手席の人|隣の人|妻|夫|友達)が(寒い|寒がってる|寒いって)", {"zone": "passenger", "celsius": 24}, "free"),
        F("(助手席の人|隣の人|妻|夫|友達)が(暑い|暑がってる|暑いって)", {"zone": "passenger", "celsius": 20}, "free"),
        F("(後ろの子供たち|後ろの人|後部座席のみんな)が(寒がってる|寒いって)", {"zone": "rear", "celsius": 24}, "free"),
        F("(後ろの子供たち|後ろの人|後部座席のみんな)が(暑がってる|暑いって)", {"zone": "rear", "celsius": 20}, "free"),
        F("(凍えそう|凍える|震えが止まらない)", {"zone": "driver", "celsius": 26}, "free"),
        F("(車内|車の中)が(サウナみたい|暑すぎる|蒸し風呂みたい)", {"zone": "all", "celsius": 18}, "free"),
    ],
    "set_fan_speed": [
        F("(ファン|風量|送風|ファンの強さ|エアコンの風)を{lvl}(に|に設定|に変更)(して|)"),
        F("(ファン|風量|送風)(を|)(レベル|)({lvl})(にして|に設定して|に変えて)"),
        F("(ファン|風量|送風)(は|)(レベル|){lvl}で", kind="free"),
        F("(ファン|送風|エアコンの風)を(止めて|切って|オフにして)", {"level": 0}),
        F("(風量|ファン|風)を(最大|マックス|一番強く)にして", {"level": 7}),
        F("(風量|ファン|風)を(最小|一番弱く)にして", {"level": 1}),
        F("(風|ファン)が(うるさい|強すぎる)から{lvl}にして", kind="free"),
    ],
    "set_seat_heater": [
        F("{seat}の(シートヒーター|シート暖房|座席ヒーター)を(レベル|){lvl}に(して|設定して|変えて)"),
        F("{seat}の(シートヒーター|シート暖房|座席ヒーター)を(つけて|オンにして|入れて)", {"level": 2}),
        F("{seat}の(シートヒーター|シート暖房|座席ヒーター)を(切って|消して|オフにして|止めて)", {"level": 0}),
        F("{seat}の(シートヒーター|シート暖房|座席ヒーター)を(強|最大|マックス|一番強く)にして", {"level": 3}),
        F("{seat}の(シートヒーター|シート暖房|座席ヒーター)を(弱|最小|一番弱く)にして", {"level": 1}),
        F("{seat}の(シートヒーター|シート暖房|座席ヒーター)を(中|真ん中)にして", {"level": 2}),
        F("(シート|座席|お尻|背中)が(冷たい|寒い|冷える)", {"seat": "driver", "level": 2}, "free"),
        F("(シート|座席|お尻)が(熱い|熱すぎる)", {"seat": "driver", "level": 0}, "free"),
    ],
    "set_window": [
        F("{window}を{pct}(開けて|開いて|下げて)"),
        F("{window}を{pct}(に|まで)(開けて|して|下げて)"),
        F("{window}を(半分|半分くらい)(開けて|下げて)", {"percent": 50}),
        F("{window}を(閉めて|閉じて|上げて|全部閉めて)", {"percent": 0}),
        F("{window}を(全開にして|全部開けて|最後まで開けて|全開で開けて)", {"percent": 100}),
        F("{window}を(少し|ちょっと|少しだけ)(開けて|下げて)", {"percent": 20}),
        F("(空気がこもってる|車内が息苦しい|空気がよどんでる)", {"window": "all", "percent": 20}, "free"),
        F("(外の空気を吸いたい|新鮮な空気がほしい)", {"window": "driver", "percent": 20}, "free"),
        F("(雨が降ってきた|雨だ|雨が入ってくる)(から|、)窓を(閉めて|全部閉めて)", {"window": "all", "percent": 0}),
    ],
    "set_drive_mode": [
        F("{mode}モードに(して|切り替えて|変えて|変更して|設定して)"),
        F("(ドライブモード|走行モード|運転モード)を{mode}に(して|切り替えて|変えて)"),
        F("{mode}モード(で|)(お願い|頼む|)", kind="free"),
        F("(燃費|電費)(を良くしたい|を良くして|重視で|優先で)", {"mode": "eco"}, "free"),
        F("(ガソリン|燃料|電気|バッテリー)を(節約したい|節約して)", {"mode": "eco"}, "free"),
        F("(パワーがほしい|キビキビ走りたい|スポーティーに走りたい|もっと加速したい)", {"mode": "sport"}, "free"),
        F("(乗り心地を良くして|ゆったり走りたい|快適に走りたい|優しい乗り心地にして)", {"mode": "comfort"}, "free"),
    ],
    "set_lights": [
        F("(ヘッドライト|ライト|前照灯|ヘッドランプ)を{state}"),
        F("(ヘッドライト|ライト|前照灯)、{state}", kind="free"),
        F("(ヘッドライト|ライト|前照灯)を(オート|自動)(モード|)にして", {"state": "auto"}),
        F("(暗くなってきた|暗くて見えない|夜になった|前がよく見えない)", {"state": "on"}, "free"),
        F("(トンネルに入る|トンネルだ)(から|、)(ライトつけて|ライトお願い)", {"state": "on"}, "free"),
    ],
    "find_nearby": [
        F("(近くの|近くにある|この辺の|最寄りの|一番近い){cat}を(探して|見つけて|教えて|調べて|検索して)"),
        F("(近くに|この辺に|周りに){cat}(ある？|はある？|ないかな|ありますか？)", kind="free"),
        F("(最寄りの|一番近い){cat}(はどこ？|どこ？|はどこですか)", kind="free"),
        F("{cat}に(行きたい|寄りたい)", kind="free"),
        F("(バッテリー|電池|充電)が(少ない|やばい|切れそう|なくなりそう)", {"category": "charging_station"}, "free"),
        F("(ガソリン|燃料|ガス)が(少ない|やばい|切れそう|なくなりそう|ない)", {"category": "gas_station"}, "free"),
        F("(お腹すいた|腹減った|お腹がすいた|何か食べたい)", {"category": "restaurant"}, "free"),
        F("(コーヒー飲みたい|コーヒーが飲みたい|一息つきたい)", {"category": "cafe"}, "free"),
        F("(トイレ行きたい|トイレに行きたい|お手洗いに行きたい|漏れそう)", {"category": "restroom"}, "free"),
        F("(どこに停めよう|車を停めたい|駐車したい|停める場所ある？)", {"category": "parking"}, "free"),
        F("(気分が悪い|具合が悪い|けがをした|医者に診てもらいたい)", {"category": "hospital"}, "free"),
        F("(お菓子|飲み物|水|おやつ)を(買いたい|買っておきたい)", {"category": "convenience_store"}, "free"),
    ],
    "navigate_to": [
        F("{place}(まで|へ|に)(案内して|ナビして|連れてって|連れて行って|向かって|行って)"),
        F("{place}(を|に)(目的地|行き先)に(して|設定して|セットして)"),
        F("{place}(まで|へ)の(道|ルート|行き方)を(教えて|案内して|調べて|出して)"),
        F("{place}(まで|へ|に)(行きたい|向かいたい|行く)", kind="free"),
        F("{place}(まで|へ)(歩いて|徒歩で)(案内して|連れてって|行きたい)", {"mode": "walk"}),
        F("(徒歩で|歩いて){place}(まで|へ)(案内して|ナビして)", {"mode": "walk"}),
        F("{place}(まで|へ)車で(案内して|連れてって|行って)", {"mode": "drive"}),
        F("{place}(まで|へ)(ナビ|ルート案内|案内)(お願い|して|頼む)", kind="free"),
    ],
    "play_media": [
        F("{media}を(かけて|流して|再生して|聴かせて|つけて)"),
        F("{media}(が|を)(聴きたい|聞きたい)", kind="free"),
        F("{media}(を|)(再生|お願い)", kind="free"),
    ],
    "media_control": [
        F("(音楽|曲|再生|これ)を(一時停止して|止めて|ストップして)", {"action": "pause"}),
        F("(一時停止|ストップ|ちょっと止めて)", {"action": "pause"}, "free"),
        F("(音楽|曲|再生)を(再開して|続けて)", {"action": "resume"}),
        F("(再開|続きから|続けて)(お願い|)", {"action": "resume"}, "free"),
        F("(次の曲|次のトラック)(にして|に行って|に飛ばして|かけて)", {"action": "next"}),
        F("(この曲|これ)(を|)(飛ばして|スキップして)", {"action": "next"}),
        F("(この曲|これ)(嫌い|好きじゃない|飽きた)", {"action": "next"}, "free"),
        F("(前の曲|一つ前の曲|さっきの曲)(に戻して|をかけて|に戻って|をもう一回)", {"action": "previous"}),
    ],
    "set_volume": [
        F("(音量|ボリューム|音)を{pct}に(して|設定して|変えて|上げて|下げて)"),
        F("(音量|ボリューム)(は|){pct}で", kind="free"),
        F("(音|音量|ボリューム)を(消して|ゼロにして|ミュートにして)", {"level": 0}),
        F("(ミュート|消音)(して|にして)", {"level": 0}),
        F("(音量|ボリューム|音)を(最大|マックス|一番大きく)にして", {"level": 100}),
    ],
    "call_contact": [
        F("{name}に(電話して|電話かけて|電話をかけて|電話をつないで|かけて|発信して)"),
        F("{name}(に|と)(電話したい|話したい|通話したい)", kind="free"),
        F("{name}に(電話|発信)(お願い|頼む|)", kind="free"),
        F("{name}を(呼び出して|呼んで)"),
    ],
    "send_message": [
        F("{name}(に|へ)「{text}」(って|と)(送って|メッセージして|メッセージ送って|送信して|伝えて|連絡して|ラインして)"),
        F("{name}(に|へ){text}(って|と)(送って|伝えて|メッセージして|連絡して)"),
        F("{name}(に|へ)(メッセージ|メール|LINE)(を送って|して)、「{text}」", kind="free"),
        F("「{text}」(って|と){name}(に|へ)(送って|伝えて|メッセージして)"),
    ],
    "get_weather": [
        F("{day}の{place}の(天気|天気予報|気温)(は？|を教えて|を調べて|どう？)", kind="free"),
        F("{place}の{day}の(天気|天気予報|気温)(は？|を教えて|を調べて|どう？)", kind="free"),
        F("{day}の(天気|天気予報|気温)(は？|を教えて|を調べて|どう？)", kind="free"),
        F("{place}(は|って){day}(雨|晴れ|雪|寒い|暑い)(？|かな)", kind="free"),
        F("{day}(は|って)(雨|晴れ|雪|寒い|暑い)(？|かな|降る？)", kind="free"),
        F("{day}(は|)(傘|上着|コート)(いる？|必要？|持っていったほうがいい？)", kind="free"),
    ],
    "set_timer": [
        F("{min}(の|)(タイマー|カウントダウン)を(セットして|かけて|設定して|始めて|スタートして)"),
        F("{min}(後に|たったら)(教えて|知らせて|呼んで|起こして)"),
        F("(タイマー|カウントダウン)(を|){min}(で|に)(セットして|かけて|設定して)"),
        F("(タイマー|カウントダウン){min}(お願い|で)", kind="free"),
        F("(カップ麺|カップラーメン|インスタントラーメン)(作る|を作る|食べる)(から|よ)", {"minutes": 3}, "free"),
    ],
    "set_reminder": [
        F("{time}に{todo}(って|と)(リマインドして|教えて|通知して|知らせて|思い出させて)"),
        F("{todo}(って|と){time}に(リマインドして|教えて|通知して|知らせて)"),
        F("{time}に{todo}(って|と)(リマインダー|リマインド)(を|)(設定して|入れて|セットして)"),
        F("{time}(に|)(リマインド|リマインダー)(：|、){todo}", kind="free"),
        F("{time}に{todo}(の|)(を忘れないように|のを忘れないように)(して|教えて)"),
    ],
    "translate": [
        F("「{phrase}」を{lang}(に|で)(訳して|翻訳して|言って|して)"),
        F("「{phrase}」(って|は){lang}で(何て言う？|何と言う？|どう言う？|なんて言うの？)", kind="free"),
        F("{lang}で「{phrase}」(って|は)(何て言う？|どう言う？|なんて言うの？)", kind="free"),
        F("「{phrase}」の{lang}(訳|)を(教えて|調べて)"),
        F("{lang}で「{phrase}」(って|と)言いたい", kind="free"),
    ],
    "capture": [
        F("(写真|画像|スナップ)を(撮って|撮影して|一枚撮って)", {"kind": "photo"}),
        F("(これ|この景色|今の|この瞬間)(を|)(撮って|写真に撮って|撮影して|写真に残して)", {"kind": "photo"}),
        F("(写真|一枚|写真を)(お願い|頼む)", {"kind": "photo"}, "free"),
        F("(動画|ビデオ|映像)を(撮って|撮影して|録画して|撮り始めて)", {"kind": "video"}),
        F("(録画|動画撮影|撮影)を(開始して|始めて|スタートして)", {"kind": "video"}),
        F("{sec}(の|)(動画|ビデオ)を(撮って|撮影して|録画して)", {"kind": "video"}),
        F("(これ|この景色)を{sec}(録画して|撮影して)", {"kind": "video"}),
    ],
    "read_notifications": [
        F("(通知|お知らせ|新着)を(読んで|読み上げて|教えて|確認して)", {"count": 5}),
        F("(最新の|新しい|直近の)(通知|お知らせ)を{cnt}(件|つ|個)(読んで|読み上げて|教えて)"),
        F("{app}の(通知|新着|メッセージ)を(読んで|読み上げて|教えて|確認して)", {"count": 5}),
        F("{app}の(通知|新着|メッセージ)を{cnt}(件|つ)(読んで|読み上げて|教えて)"),
        F("(最新の|一番新しい|直近の)(通知|お知らせ)を(一件|1件|ひとつ)(読んで|教えて)", {"count": 1}),
        F("{app}(に|で)(何か|)(新着|通知|連絡)(ある？|来てる？|ない？)", {"count": 5}, "free"),
        F("(何か|)(通知|新着|連絡)(来てる？|ある？)", {"count": 5}, "free"),
    ],
    "set_display_brightness": [
        F("(画面|ディスプレイ|表示)の(明るさ|輝度)を{pct}に(して|設定して|変えて|合わせて)"),
        F("(明るさ|輝度)を{pct}に(して|設定して|変えて)"),
        F("(明るさ|輝度)(は|){pct}で", kind="free"),
        F("(画面|ディスプレイ|表示)を(暗くして|少し暗くして|落として)", {"percent": 30}),
        F("(画面|ディスプレイ|表示)が(まぶしい|明るすぎる|まぶしすぎる)", {"percent": 30}, "free"),
        F("(画面|ディスプレイ|表示)を(一番明るく|最大の明るさに|最大に)して", {"percent": 100}),
        F("(日差しで|外だと|太陽で|明るくて)(画面|ディスプレイ|表示)が(見えない|見づらい|読めない)", {"percent": 100}, "free"),
        F("(画面|ディスプレイ)の(明るさ|輝度)を(ゼロに|最低に|一番暗く)して", {"percent": 0}),
    ],
})

# ----------------------------------------------------------------------------- out-of-domain (train only)
# Requests a tool-calling edge model must hand up: knowledge, writing, maths, advice, chit-chat, code.
EN_OOD_TOPICS_G = ["ancient Egypt", "the Cold War", "plate tectonics", "the water cycle", "neural networks", "the Vikings",
                   "the Industrial Revolution", "bees", "the ocean floor", "nuclear power", "the French language",
                   "Shakespeare", "the Big Bang", "gravity", "the Samurai", "origami", "baseball", "the Amazon rainforest",
                   "hurricanes", "the human brain", "chocolate", "the history of cars", "Mozart", "evolution",
                   "interest rates", "solar panels", "the Eiffel Tower", "penguins", "the Moon", "sleep", "meditation",
                   "the periodic table", "democracy", "the Beatles", "anime", "renewable energy", "the Pyramids"]
JA_OOD_TOPICS_G = ["古代エジプト", "冷戦", "プレートテクトニクス", "水の循環", "ニューラルネットワーク", "バイキング", "産業革命",
                   "ミツバチ", "深海", "原子力", "シェイクスピア", "ビッグバン", "重力", "侍", "折り紙", "野球", "アマゾンの熱帯雨林",
                   "台風", "人間の脳", "チョコレート", "車の歴史", "モーツァルト", "進化論", "金利", "太陽光発電", "エッフェル塔",
                   "ペンギン", "睡眠", "瞑想", "周期表", "民主主義", "アニメ", "再生可能エネルギー", "ピラミッド", "江戸時代"]
EN_OOD_G = (
    expand("(explain|describe|tell me about|teach me about|give me an overview of|what do you know about|"
           "I'm curious about|talk to me about|write a report on|write a blog post about|write a song about|"
           "give me a summary of|write a speech about|give me a lesson on|what's interesting about) {topic}")
    + expand("(who|what|when|where|why|how) (is|was|are|were|did|does) {topic} (important|invented|discovered|famous|)?")
    + expand("(what's|what is) the (difference|connection) between {topic} and {topic2}?")
    + expand("(what's|what is|how much is|calculate|compute|work out) {a} (plus|minus|times|divided by) {b}?")
    + expand("(how many|how much) (days|hours|seconds|weeks) (are|is) (in|there in) {a} (years|days|hours)?")
    + expand("(write|draft|compose) (an email|a letter|a speech|a toast|a story|a poem|a review|a tweet) "
             "(to my landlord|for my best friend's wedding|about my vacation|for my team|about a dragon|about my cat)")
    + expand("(give me|do you have|share) (some|a few|) (advice|tips|ideas) (on|for|about) "
             "(saving money|losing weight|studying|a first date|job interviews|learning guitar|raising kids|a gift for my mom)")
    + expand("(write|fix|explain|optimize|review) (this|my|a) (Python|JavaScript|Rust|SQL|C++) (code|function|query|script|program)")
    + expand("(do you|can you|would you) (like|love|dream|feel|think|get tired|have friends|believe in ghosts)?")
    + expand("(I'm|I feel) (sad|lonely|stressed|happy|tired|nervous|excited) (today|right now|about tomorrow|)")
    + expand("(who is|who was) (the richest person|the tallest man|the first president|the best footballer) (in the world|of the US|in history|ever)?")
    + expand("(recommend|suggest) (a movie|a book|a game|a TV show|a podcast episode|a hobby) (for tonight|for my kids|for a rainy day|to me|)")
)
JA_OOD_G = (
    expand("{topic}(について|のことを)(教えて|説明して|詳しく知りたい|解説して|まとめて|レポートを書いて|ブログ記事を書いて|歌を作って)")
    + expand("{topic}(って|とは)(何|なに|どういうもの)(？|ですか|なの？)")
    + expand("{topic}(は|って)(なぜ|どうして|いつ|どこで)(生まれた|始まった|有名|重要)なの？")
    + expand("{topic}と{topic2}の(違い|関係)(は？|を教えて)")
    + expand("{a}(足す|引く|かける|割る){b}(は？|はいくつ？|を計算して|って何？)")
    + expand("{a}(年|日|時間)は何(日|時間|秒)？")
    + expand("(大家さんへの|友達の結婚式の|旅行についての|チームへの|猫についての)(メール|手紙|スピーチ|物語|詩|感想文)を(書いて|作って)")
    + expand("(節約|ダイエット|勉強|面接|ギターの練習|子育て|母へのプレゼント)(のコツ|のアドバイス|について)(を教えて|ある？|ちょうだい)")
    + expand("(この|私の)(Python|JavaScript|Rust|SQL)の(コード|関数|クエリ)を(直して|説明して|レビューして|速くして)")
    + expand("(夢を見る|友達いる|疲れる|幽霊を信じる|恋をする)(の？|？)")
    + expand("(今日は|なんだか|ちょっと)(悲しい|寂しい|疲れた|緊張してる|嬉しい|落ち込んでる)")
    + expand("(世界一の|史上最高の|日本一の)(お金持ち|サッカー選手|高いビル|長い川)(は誰？|はどこ？|は？)")
    + expand("(今夜見る|子供向けの|雨の日に|私におすすめの)(映画|本|ゲーム|ドラマ|趣味)(を教えて|ある？|を提案して)")
)

# Near-miss requests (they use the tools' words but ask for knowledge, advice or writing) and
# everyday questions, more of them in Japanese. gen_corpus.py drops any expansion that shares a word 4-gram
# (Japanese: a 6-character run) with a held-out test template or a hand-written request (LEAK_GUARD).
EN_OOD_G2 = (
    expand("(how does|how do) (the|a|my car's) (air conditioning|cruise control|hybrid engine|GPS|sunroof|ABS|"
           "windshield wiper|turbocharger|parking sensor) work?")
    + expand("(what's|what is) the (best|cheapest|safest|most reliable|quietest) (car|electric car|SUV|minivan|camera phone) "
             "(to buy|for a family|this year|)?")
    + expand("(is it|is it really) (safe|legal|a good idea|okay) to (drive|use my phone|eat|listen to loud music) "
             "(while driving|in the snow|at night|when I'm sleepy)?")
    + expand("(why|how come) (do|does) (windows fog up|tires lose pressure|batteries die in the cold|engines overheat|"
             "car prices go up|headlights turn yellow)?")
    + expand("(who|which band|which artist) (wrote|sang|recorded|composed) (Hotel California|the Moonlight Sonata|"
             "Let It Be|the song on the radio|Imagine)?")
    + expand("(what's|what is) the (temperature|weather like) (on the Moon|at the South Pole|inside a volcano|on Venus)?")
    + expand("(tell me|give me) (a fun fact|the history|the story) (about|of) (navigation|the radio|photography|the telephone|"
             "traffic lights|seat belts)")
    + expand("(write|compose|draft) (a message|a text|an email|a note) (to apologize to my boss|to congratulate my cousin|"
             "to invite people to dinner|asking for a day off|thanking my teacher)")
    + expand("(how long|how many minutes) (does it take|would it take) to (boil an egg|bake a cake|drive across Japan|"
             "walk ten kilometers|charge an electric car)?")
    + expand("(what time is it|what's the time|what day is it) in (New York|London|Paris|Sydney|Cairo)?")
    + expand("(what|which) (songs|music|albums) (should I|would you) (listen to|recommend) (for a workout|to relax|"
             "on a road trip|when I'm sad)?")
    + expand("(how do I|how to|teach me to) (make|cook|bake) (pancakes|curry|sourdough bread|fried rice|ramen)( at home|)")
    + expand("(let's play|can we play|do you want to play) (a game|twenty questions|trivia|a word game)")
    + expand("(tell me|do you know) (a riddle|a fun fact|a scary story|a tongue twister)")
    + expand("(how many|how much) (calories|caffeine|sugar) (are|is) (in|there in) (a banana|a cup of coffee|a can of soda|an apple)?")
    + expand("(summarize|explain|give me the plot of) (the news|Hamlet|Star Wars|the last episode|the book I'm reading)")
    + expand("(should I|do you think I should) (buy a new car|learn Japanese|quit my job|get a cat|move to the city)?")
)
JA_OOD_G2 = (
    expand("(カーナビ|ハイブリッド車|クルーズコントロール|ワイパー|ターボ|駐車センサー)(って|は)どうやって動くの？")
    + expand("(一番|いちばん)(安全な|人気の|燃費のいい|安い)(車|電気自動車|ミニバン|スマホ)(は？|はどれ？|を教えて)")
    + expand("(運転中に|雪の日に|夜中に|眠い時に)(スマホを使っても|運転しても|音楽を大音量で聴いても)(いい|大丈夫)？")
    + expand("(窓が曇る|タイヤの空気が減る|寒いとバッテリーが弱る|エンジンがオーバーヒートする)のは(なぜ|どうして)？")
    + expand("(この曲|あの歌|このドラマの主題歌|さっきの曲)(って|は)誰が(歌ってる|作った)の？")
    + expand("(月|南極|富士山の頂上|金星)の(気温|温度)は(何度|どれくらい)？")
    + expand("(卵を茹でる|ケーキを焼く|東京から大阪まで車で行く|電気自動車を充電する)のに(何分|どれくらい)かかる？")
    + expand("(ニューヨーク|ロンドン|パリ|シドニー)は今何時？")
    + expand("(上司に休みをもらう|友達をパーティーに誘う|お詫びの|先生にお礼の)(メール|メッセージ|文章)を(考えて|書いて|作って)")
    + expand("(おすすめの|人気の)(ドライブスポット|ラーメン屋|温泉|観光地|キャンプ場)(は？|を教えて|ある？)")
    + expand("(写真|動画)を(上手に|きれいに)撮るコツ(は？|を教えて)")
    + expand("(富士山|東京タワー|スカイツリー|エベレスト)の高さは？")
    + expand("(英語|数学|歴史|プログラミング)の(勉強法|覚え方)を教えて")
    + expand("(カレー|肉じゃが|味噌汁|餃子|オムライス)の作り方を(教えて|知りたい)")
    + expand("(猫|犬|金魚|ハムスター)の(飼い方|しつけ方)を教えて")
    + expand("(なぞなぞ|しりとり|クイズ大会)(しよう|やろう|しない？)")
    + expand("(面白い話|怖い話|昔話|豆知識)(して|を聞かせて|教えて)")
    + expand("(新しい車を買う|仕事を辞める|猫を飼う|引っ越す)べきかな？")
    + expand("(ニュース|ハムレット|スター・ウォーズ|昨日のドラマ)の(あらすじ|要約|内容)を教えて")
    + expand("(バナナ|コーヒー一杯|コーラ|りんご)(の|って)カロリーはどれくらい？")
)

# ----------------------------------------------------------------------------- system prompts (train only)
# Apps write their own system prompts; the model should not depend on the three the corpus started with.
def _articles(lines):
    out = []
    for x in lines:
        x = re.sub(r"\ba ([aeiouAEIOU])", r"an \1", x)
        out.append(re.sub(r"\ban ([^aeiouAEIOU\s])", r"a \1", x))
    return list(dict.fromkeys(out))


SYSTEMS_G = {
    "en": {
        "cockpit": _articles(expand("(You are|You're|Act as) (the|a) (in-car|in-vehicle|cockpit|voice|helpful in-car) assistant"
                          "( of this car| for the driver| in this vehicle|)."
                          "( Keep answers short.| Use the tools when you can.| The driver is busy, be brief.|)")),
        "glasses": _articles(expand("(You are|You're|Act as) (the|a) (smart glasses|wearable|heads-up|voice) assistant"
                          "( on the user's glasses| for the wearer| on these glasses|)."
                          "( Keep answers short.| Use the tools when you can.| The user is walking, be brief.|)")),
    },
    "ja": {
        "cockpit": expand("(あなたは|)(車載|車の|この車の|運転支援の)(音声|)アシスタント(です|として答えてください)。"
                          "(短く答えてください。|ツールを使ってください。|)"),
        "glasses": expand("(あなたは|)(スマートグラス|メガネ型デバイス|ウェアラブル)の(音声|)アシスタント(です|として答えてください)。"
                          "(短く答えてください。|ツールを使ってください。|)"),
    },
}
