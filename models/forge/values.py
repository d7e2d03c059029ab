"""Open-ended slot values for the synthetic corpus (names, places, messages, reminders,
phrases, media queries, app names), English and Japanese.

Every value is composed from parts (syllables, kanji, word lists, sentence patterns), so the
train split sees thousands of distinct values and the model can only succeed by COPYING the
span from the request.  Train and test values are disjoint by construction: a value belongs
to the test split iff a stable hash of it falls in one bucket out of TEST_BUCKETS
(`value_split`); the generators draw until they hit a value of the requested split.
"""
import zlib

TEST_BUCKETS = 5


def value_split(v):
    return "test" if zlib.crc32(v.encode("utf-8")) % TEST_BUCKETS == 0 else "train"


def draw(rng, split, make, tries=200):
    """Draw make(rng) until the value belongs to `split` (test or train)."""
    want = "train" if split == "train" else "test"
    for _ in range(tries):
        v = make(rng)
        v = " ".join(v.split()) if " " in v else v
        if v and value_split(v) == want:
            return v
    raise RuntimeError("no value for split " + split)


def _w(s):
    return s.split()


# ----------------------------------------------------------------------------- English parts
EN_FIRST = _w("""Alice Bob Emma James Olivia Liam Sophia Noah Mia Lucas Charlotte Ethan Amelia Mason Harper Logan
Evelyn Daniel Grace Henry Chloe Jack Lily Owen Zoe Ryan Nora Sam Hannah Leo Kenji Yuki Priya Mohammed Isabella Oscar
Ruby Felix Tom Kate Mike Laura Peter Anna Max Ellie Marcus Sofia Diego Elena Ivan Fatima Omar Aisha Raj Mei Hiro
Carlos Lucia Pablo Ingrid Sven Astrid Pierre Claire Hans Greta Luca Giulia Ahmed Layla Tariq Nadia Jin Minho Soo
Wei Ling Ana Bruno Rosa Victor Irene Jonas Maya Ethan Caleb Julia Nina Adam Eva Paul Sara Mark Lisa Ben Amy
Chris Kevin Megan Jason Rachel Steve Nicole Brian Heather Greg Wendy Tyler Dana Derek Holly Frank Joan Walter Betty
Arthur Vera Dmitri Olga Kofi Amara Chidi Zara Nikhil Ananya Rohan Kai Aria Ezra Iris Jude Luna Milo Nadia Quinn""")
EN_LAST = _w("""Smith Johnson Brown Garcia Miller Davis Wilson Moore Taylor Anderson Thomas Jackson White Harris
Martin Thompson Lee Walker Hall Allen Young King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts
Carter Phillips Evans Turner Parker Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Reed
Bailey Bell Kelly Howard Ward Cox Diaz Richardson Wood Watson Brooks Bennett Gray James Hughes Price Sanders Myers
Long Ross Foster Tanaka Sato Suzuki Yamamoto Nakamura Kim Park Chen Wang Singh Patel Nguyen Müller Schmidt Rossi
Dubois Novak Kowalski Jensen Larsen Silva Santos Costa Okafor Mensah Haddad Cohen Levi Ivanova Petrov""")
ONSET = _w("b br c ch d dr f g gr h j k kl l m n p pr r s sh st t tr v w z th")
VOWEL = _w("a e i o u a e i o ai ea ou y")
CODA = ["", "", "", "n", "r", "l", "s", "m", "th", "x", "nd", "rk", "ck", "t"]
RELATIONS_EN = ["Mom", "Dad", "Grandma", "Grandpa", "my wife", "my husband", "my sister", "my brother", "my boss",
                "the office", "home"]
TITLES = ["Dr.", "Mr.", "Ms.", "Mrs.", "Professor", "Uncle", "Aunt", "Coach", "Captain"]

ROMAJI = _w("ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho ma mi mu me mo ya yu yo "
            "ra ri ru re ro wa ga gi go za ji zu da de ba bi bu be bo ryo kyo sho ju n")


def synth_word(rng, lo=2, hi=3):
    n = rng.randint(lo, hi)
    s = "".join(rng.choice(ONSET) + rng.choice(VOWEL) for _ in range(n)) + rng.choice(CODA)
    return s[:1].upper() + s[1:]


def romaji_name(rng):
    s = "".join(rng.choice(ROMAJI) for _ in range(rng.randint(2, 3)))
    return s[:1].upper() + s[1:]


def en_first(rng):
    x = rng.random()
    if x < 0.55:
        return rng.choice(EN_FIRST)
    if x < 0.8:
        return synth_word(rng)
    return romaji_name(rng)


def en_last(rng):
    x = rng.random()
    if x < 0.6:
        return rng.choice(EN_LAST)
    if x < 0.85:
        return synth_word(rng)
    return romaji_name(rng)


def en_name(rng):
    x = rng.random()
    if x < 0.42:
        return en_first(rng)
    if x < 0.78:
        return en_first(rng) + " " + en_last(rng)
    if x < 0.9:
        return rng.choice(TITLES) + " " + (en_last(rng) if rng.random() < 0.6 else en_first(rng))
    if x < 0.95:
        return rng.choice(RELATIONS_EN[:8])
    return en_first(rng) + " " + rng.choice("ABCDEFGHJKLMNPRSTW") + "."


CITIES_EN = _w("""Tokyo Osaka Kyoto Yokohama Sapporo Nagoya Fukuoka Kobe Nara Sendai Hiroshima Kanazawa Hakone
Kamakura Okinawa London Paris Berlin Madrid Rome Vienna Toronto Seoul Taipei Honolulu Dublin Lyon Lisbon Prague
Budapest Oslo Stockholm Helsinki Copenhagen Amsterdam Brussels Zurich Geneva Milan Naples Athens Istanbul Cairo
Dubai Mumbai Delhi Bangkok Singapore Jakarta Manila Hanoi Sydney Melbourne Auckland Vancouver Montreal Chicago
Boston Seattle Denver Austin Miami Atlanta Phoenix Portland Dallas Houston Detroit Lima Santiago Bogota""") + [
    "New York", "San Francisco", "Los Angeles", "Buenos Aires", "Mexico City", "Cape Town", "Hong Kong", "Rio de Janeiro"]
PLACE_NOUN = _w("""Oak Maple Pine Cedar River Lake Hill Park Market Church Bridge Harbor Garden Mill Spring Forest
Sunset Ocean Willow Station Castle Valley Meadow Rose Elm Birch Stone Brook Fox Eagle Lincoln Washington Victoria
Queen King Union Liberty Central Grand Royal Crown Jade Silver Golden Cherry Blossom""")
STREET = ["Street", "Avenue", "Road", "Lane", "Boulevard", "Drive", "Way", "Square"]
VENUE = ["Station", "Park", "Airport", "Hospital", "University", "Museum", "Library", "Stadium", "Mall", "Hotel",
         "Bridge", "Beach", "Tower", "Plaza", "Market", "High School", "Zoo", "Aquarium", "Terminal", "Castle"]
SHOP_KIND = ["Cafe", "Bakery", "Diner", "Pizza", "Sushi", "Ramen", "Books", "Bistro", "Grill", "Hardware",
             "Pharmacy", "Gym", "Clinic", "Garage", "Kitchen", "Deli", "Bar", "Tea House"]
ADJ_EN = _w("""blue red green golden silver little big old new happy lazy quiet wild sweet lucky hidden bright dark
sunny rainy cozy crazy lonely electric secret broken endless midnight summer winter spring autumn northern
velvet neon paper crystal wooden""")
NOUN_EN = _w("""moon star river road heart dream city light sky ocean fire garden rain snow window door bird wolf
tiger rose train bridge mirror shadow island mountain forest song letter clock kingdom echo planet thunder
horizon valley lantern harbor coffee whale fox""")


def en_place(rng):
    x = rng.random()
    if x < 0.2:
        return rng.choice(CITIES_EN)
    if x < 0.3:
        return synth_word(rng) + rng.choice(["", "", "ville", "ton", "burg", " City", " Bay", " Heights"])
    if x < 0.5:
        base = rng.choice([rng.choice(CITIES_EN), synth_word(rng), rng.choice(PLACE_NOUN), rng.choice(EN_LAST)])
        return base + " " + rng.choice(VENUE)
    if x < 0.65:
        return f"{rng.randint(1, 999)} {rng.choice([rng.choice(PLACE_NOUN), rng.choice(EN_LAST), synth_word(rng)])} {rng.choice(STREET)}"
    if x < 0.75:
        return f"{rng.choice([rng.choice(PLACE_NOUN), rng.choice(EN_LAST), synth_word(rng)])} {rng.choice(STREET)}"
    if x < 0.88:
        owner = rng.choice([en_first(rng) + "'s", "The " + rng.choice(ADJ_EN).capitalize() + " " + rng.choice(NOUN_EN).capitalize(),
                            synth_word(rng)])
        return owner + " " + rng.choice(SHOP_KIND)
    if x < 0.94:
        return "the " + rng.choice([rng.choice(PLACE_NOUN), synth_word(rng), rng.choice(EN_LAST)]) + " " + rng.choice(VENUE)
    return rng.choice(["the airport", "the office", "home", "the train station", "the city hall", "the hospital",
                       "the beach", "my hotel", "the stadium", "work", "school", "the mall"])


# messages: sentence patterns over small vocabularies
OBJ_EN = [o.strip() for o in """milk, bread, eggs, coffee, tea, batteries, the tickets, the keys, my wallet, an umbrella,
the charger, diapers, rice, flowers, the cake, wine, the laptop, the documents, my glasses, sunscreen, bananas, cheese,
pasta, tomatoes, the mail, water, snacks, the car seat, a gift, the contract, ice cream, napkins, tape, paint""".split(",")]
FOOD_EN = ["pizza", "sushi", "ramen", "tacos", "curry", "burgers", "pasta", "Thai food", "dim sum", "noodles",
           "a salad", "pancakes", "steak", "fried chicken", "soup"]
EVENT_EN = ["the meeting", "dinner", "lunch", "the game", "practice", "the movie", "the concert", "class", "work",
            "the interview", "the party", "the show", "the appointment", "school", "the flight"]
EN_MSG_PATTERNS = [
    "I'm running late", "I'm running {n} minutes late", "I'll be there in {n} minutes", "I'm on my way",
    "can you pick up {obj}?", "please buy {obj}", "don't forget {obj}", "we need more {obj}",
    "I left {obj} at {place}", "meet me at {place}", "I'm at {place}", "see you at {place}",
    "see you at {clock}", "I'll be home by {clock}", "{event} is moved to {clock}", "{event} is cancelled",
    "let's get {food} tonight", "want to grab {food}?", "I'm stuck in traffic near {place}",
    "happy birthday {first}!", "thanks for {event}", "how was {event}?", "call me after {event}",
    "the door code is {code}", "my flight lands at {clock}", "leaving {place} now", "almost at {place}",
    "park at {place}", "the {noun} is {adj}", "good luck with {event}", "sorry, I can't make it to {event}",
    "running out of battery", "where are you?", "love you", "miss you", "be there at {clock}",
    "I found {obj}", "bring {obj} please", "dinner is ready", "start without me", "I just landed in {city}",
    "save me a seat at {event}", "the kids are with {first}", "ask {first} about {event}", "room {code}",
    "gate {gate}", "my number is {phone}", "I'll call you back", "ok", "yes, {clock} works", "no worries",
]
EN_MSG_FIXED = ["Traffic is terrible, start without me", "Can we reschedule?", "Leaving the office now", "Almost home",
                "Bring an umbrella", "The kids are asleep", "Let's meet at noon", "Order pizza for me", "Got the groceries",
                "See you tomorrow", "Sorry, I can't make it tonight", "Thanks for today", "Where did you park?"]


def _clock_en(rng):
    h = rng.randint(1, 12)
    m = rng.choice([0, 0, 15, 30, 45, rng.randint(0, 59)])
    return rng.choice([f"{h}", f"{h}:{m:02d}", f"{h} pm", f"{h}:{m:02d} am", f"{h}pm", "noon", f"{h} o'clock"])


def en_message(rng):
    def one():
        if rng.random() < 0.08:
            return rng.choice(EN_MSG_FIXED)
        p = rng.choice(EN_MSG_PATTERNS)
        rep = {"{n}": lambda: str(rng.choice([5, 10, 15, 20, 30, rng.randint(2, 59)])),
               "{obj}": lambda: rng.choice(OBJ_EN), "{place}": lambda: en_place(rng),
               "{clock}": lambda: _clock_en(rng), "{event}": lambda: rng.choice(EVENT_EN),
               "{food}": lambda: rng.choice(FOOD_EN), "{first}": lambda: en_first(rng),
               "{code}": lambda: str(rng.randint(100, 9999)), "{noun}": lambda: rng.choice(NOUN_EN),
               "{adj}": lambda: rng.choice(ADJ_EN), "{city}": lambda: rng.choice(CITIES_EN),
               "{gate}": lambda: rng.choice("ABCDEFG") + str(rng.randint(1, 60)),
               "{phone}": lambda: f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"}
        for k, f in rep.items():
            while k in p:
                p = p.replace(k, f(), 1)
        return p
    s = one()
    if rng.random() < 0.15:
        s = s.rstrip("!?.") + rng.choice([", ", ". ", " and "]) + one()
    if rng.random() < 0.5:
        s = s[:1].upper() + s[1:]
    return s


TODO_EN = [
    ("buy", lambda r: r.choice(OBJ_EN)), ("pick up", lambda r: r.choice(OBJ_EN + ["the kids", "the dry cleaning"])),
    ("call", lambda r: en_name(r)), ("email", lambda r: en_name(r)), ("text", lambda r: en_first(r)),
    ("pay", lambda r: r.choice(["the rent", "the electricity bill", "the phone bill", "the gas bill", "taxes", "the invoice"])),
    ("book", lambda r: r.choice(["a table", "a hotel", "the flights", "a taxi", "a haircut", "a doctor's appointment"])),
    ("water", lambda r: r.choice(["the plants", "the garden", "the tomatoes"])),
    ("feed", lambda r: r.choice(["the cat", "the dog", "the fish", "the baby"])),
    ("charge", lambda r: r.choice(["the car", "my phone", "the laptop", "the camera"])),
    ("take", lambda r: r.choice(["my medicine", "the pills", "out the trash", "the dog out", "a break"])),
    ("renew", lambda r: r.choice(["my passport", "the insurance", "my license", "the subscription"])),
    ("check", lambda r: r.choice(["the oven", "the mail", "the tire pressure", "the weather", "my email"])),
    ("send", lambda r: r.choice(["the report", "the invoice", "the slides", "a card to " + en_first(r)])),
    ("go to", lambda r: en_place(r)), ("leave for", lambda r: en_place(r)),
    ("return", lambda r: r.choice(OBJ_EN + ["the library books", "the rental car"])),
    ("prepare", lambda r: r.choice(["the slides", "dinner", "the presentation", "lunch boxes"])),
    ("clean", lambda r: r.choice(["the kitchen", "the car", "my room", "the bathroom"])),
    ("fix", lambda r: r.choice(["the bike", "the sink", "the printer", "the fence"])),
    ("order", lambda r: r.choice(FOOD_EN + OBJ_EN)), ("bring", lambda r: r.choice(OBJ_EN)),
    ("call the", lambda r: r.choice(["bank", "dentist", "plumber", "landlord", "school", "vet", "garage"])),
]
TODO_EN_TAIL = ["", "", "", "", " for {first}", " before {event}", " after {event}", " at {place}"]


def en_todo(rng):
    v, f = rng.choice(TODO_EN)
    s = v + " " + f(rng)
    t = rng.choice(TODO_EN_TAIL)
    t = t.replace("{first}", en_first(rng)).replace("{event}", rng.choice(EVENT_EN)).replace("{place}", en_place(rng))
    if rng.random() < 0.04:
        s = rng.choice(["stretch", "meditate", "drink water", "lock the door", "start the laundry", "walk the dog"])
    return s + t


THING_EN = OBJ_EN + ["a coffee", "the menu", "a map", "a ticket", "a taxi", "the bill", "a room", "a table for two"]
EN_PHRASE_PATTERNS = [
    "where is {place}?", "how much is {thing}?", "I would like {thing}, please", "do you have {thing}?",
    "can I have {thing}?", "I'm looking for {place}", "is {place} far from here?", "my name is {first}",
    "I'm from {city}", "what time does {place} open?", "{thing}, please", "please take me to {place}",
    "I need {thing}", "where can I buy {thing}?", "I lost {thing}", "thank you for {event}",
    "the {noun} is {adj}", "I love {food}", "I am allergic to {food}", "how do I get to {place}?",
    "good morning", "good evening", "good night", "thank you very much", "nice to meet you", "excuse me",
    "I don't understand", "can you help me?", "see you later", "how are you?", "this is delicious",
    "the bill, please", "I'm lost", "one more, please", "no thank you", "it was a pleasure",
]


def en_phrase(rng):
    p = rng.choice(EN_PHRASE_PATTERNS)
    rep = {"{place}": lambda: en_place(rng), "{thing}": lambda: rng.choice(THING_EN), "{first}": lambda: en_first(rng),
           "{city}": lambda: rng.choice(CITIES_EN), "{event}": lambda: rng.choice(EVENT_EN),
           "{noun}": lambda: rng.choice(NOUN_EN), "{adj}": lambda: rng.choice(ADJ_EN), "{food}": lambda: rng.choice(FOOD_EN)}
    for k, f in rep.items():
        while k in p:
            p = p.replace(k, f(), 1)
    if rng.random() < 0.6:
        p = p[:1].upper() + p[1:]
    return p


GENRE_EN = ["jazz", "rock", "pop", "hip hop", "classical", "country", "blues", "lo-fi", "indie", "soul", "reggae",
            "metal", "folk", "k-pop", "city pop", "house", "techno", "ambient", "funk", "disco"]
REAL_ARTISTS = ["Taylor Swift", "The Beatles", "Queen", "Miles Davis", "Daft Punk", "Adele", "Coldplay", "Radiohead",
                "Bach", "Ed Sheeran", "Nirvana", "Utada Hikaru", "YOASOBI", "King Gnu", "Billie Eilish", "Mozart",
                "Bruno Mars", "Norah Jones", "Fleetwood Mac", "John Coltrane", "Bob Dylan", "ABBA", "Prince"]


def title_en(rng):
    a, n, n2 = rng.choice(ADJ_EN).capitalize(), rng.choice(NOUN_EN).capitalize(), rng.choice(NOUN_EN).capitalize()
    return rng.choice([f"{a} {n}", f"{n} of the {n2}", f"The {a} {n}", f"{n}", f"{a} {n}s", f"{n} and {n2}",
                       f"My {a} {n}", f"{synth_word(rng)}", f"{n} in {rng.choice(CITIES_EN)}", f"{a} {n} {rng.randint(1, 99)}"])


def en_media(rng, kind):
    if kind == "artist":
        return rng.choice([rng.choice(REAL_ARTISTS), en_first(rng) + " " + en_last(rng), synth_word(rng),
                           "The " + rng.choice(ADJ_EN).capitalize() + " " + rng.choice(NOUN_EN).capitalize() + "s",
                           "DJ " + synth_word(rng), synth_word(rng) + " and the " + rng.choice(NOUN_EN).capitalize() + "s"])
    if kind in ("song", "album"):
        return title_en(rng)
    if kind == "playlist":
        return rng.choice([f"{rng.choice(ADJ_EN)} {rng.choice(NOUN_EN)}", f"{rng.choice(GENRE_EN)} mix",
                           f"{rng.choice(['70', '80', '90'])}s {rng.choice(GENRE_EN)}", f"{rng.choice(GENRE_EN)} classics",
                           f"{rng.choice(ADJ_EN)} {rng.choice(GENRE_EN)}", rng.choice(["road trip", "workout", "focus",
                           "sleep", "morning coffee", "party mix", "study beats", "late night drive", "top 50"]),
                           f"{en_first(rng)}'s favorites"])
    if kind == "podcast":
        n = rng.choice(NOUN_EN).capitalize()
        return rng.choice([f"The {n} Show", f"{rng.choice(ADJ_EN).capitalize()} {n}", f"{en_first(rng)} Talks",
                           f"{n} Hour", f"The Daily {n}", f"{synth_word(rng)} Radio Hour", f"History of the {n}",
                           rng.choice(["The Daily", "Radiolab", "Planet Money", "Hidden Brain", "Serial"])])
    return rng.choice([f"{synth_word(rng)} FM", f"Radio {synth_word(rng)}", f"{rng.randint(76, 107)}.{rng.randint(0, 9)} FM",
                       f"{rng.choice(GENRE_EN)} radio", f"{rng.choice(CITIES_EN)} Radio", f"{rng.choice(['K', 'W'])}"
                       f"{''.join(rng.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ') for _ in range(3))}",
                       rng.choice(["BBC Radio 1", "J-WAVE", "NHK-FM", "Classic FM", "NPR", "KEXP"])])


APPS_EN = ["Slack", "LINE", "Gmail", "WhatsApp", "Messages", "Calendar", "Twitter", "Instagram", "Teams", "Outlook",
           "Discord", "Telegram", "Signal", "Facebook", "Reddit", "YouTube", "Zoom", "Uber", "Spotify", "Strava",
           "TikTok", "Snapchat", "WeChat", "Kakao", "Notion", "Trello", "Asana", "Duolingo", "Netflix", "Amazon"]


def app_name(rng):
    if rng.random() < 0.6:
        return rng.choice(APPS_EN)
    return synth_word(rng, 1, 2) + rng.choice(["", "", "Chat", "Mail", "Pay", "Go", "ly", " News"])


# ----------------------------------------------------------------------------- Japanese parts
SURNAME_A = list("山田中川木林村井藤本野原小大高石松森池岡上下西東北南吉佐伊加清橋長谷前坂島宮内竹早福太")
SURNAME_B = list("田中川木村井藤本野原口山崎島沢谷部橋岡下瀬尾倉浦森宮内元")
REAL_SURNAMES = ["田中", "佐藤", "鈴木", "高橋", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田",
                 "佐々木", "松本", "井上", "木村", "林", "清水", "山口", "森", "池田", "橋本", "石川", "前田", "長谷川",
                 "小川", "森本", "斎藤", "阿部", "近藤"]
GIVEN_A = list("健太大翔拓直和美恵由真結優陽花愛千春秋夏雪光明誠正浩智裕達彩菜")
GIVEN_B = ["太", "郎", "介", "輔", "也", "樹", "人", "斗", "平", "子", "美", "香", "奈", "菜", "花", "恵", "咲", "希",
           "衣", "代", "彦", "一", "二", "志", "乃"]
HIRA = list("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわ") + ["ゆう", "しょう", "りょう"]
KATA = list("アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン") + \
    ["ジョ", "シャ", "チャ", "ティ", "ディ", "ファ", "フィ", "ヴィ", "ー", "ー", "ッ"]
RELATIONS_JA = ["母", "父", "妻", "夫", "部長", "課長", "社長", "先生", "兄", "姉", "弟", "妹", "おばあちゃん", "おじいちゃん",
                "お母さん", "お父さん", "家"]


def ja_surname(rng):
    if rng.random() < 0.4:
        return rng.choice(REAL_SURNAMES)
    return rng.choice(SURNAME_A) + rng.choice(SURNAME_B)


def ja_given(rng):
    x = rng.random()
    if x < 0.6:
        return rng.choice(GIVEN_A) + rng.choice(GIVEN_B)
    if x < 0.85:
        return "".join(rng.choice(HIRA) for _ in range(rng.randint(2, 3)))
    return rng.choice(GIVEN_A)


def katakana_word(rng, lo=2, hi=4):
    s = rng.choice(KATA[:46])
    for _ in range(rng.randint(lo, hi) - 1):
        s += rng.choice(KATA)
    return s.replace("ーー", "ー").replace("ッッ", "ッ").rstrip("ッ")


def ja_name(rng):
    x = rng.random()
    if x < 0.4:
        return ja_surname(rng)
    if x < 0.6:
        return ja_given(rng)
    if x < 0.75:
        return ja_surname(rng) + ja_given(rng)
    if x < 0.85:
        return katakana_word(rng)
    if x < 0.93:
        return en_first(rng)
    return rng.choice(RELATIONS_JA[:14])


HONORIFIC_FREE = set(RELATIONS_JA)

PLACE_A = list("北南東西新大小上下中本高石松桜若青白赤金銀富光明平和緑港川山")
PLACE_B = list("山川田野原町井沢浜島岡崎橋谷木宮坂台丘池森津浦")
REAL_PLACES_JA = ["東京", "大阪", "京都", "名古屋", "横浜", "札幌", "福岡", "神戸", "奈良", "仙台", "広島", "金沢", "箱根",
                  "軽井沢", "鎌倉", "沖縄", "渋谷", "新宿", "池袋", "銀座", "秋葉原", "浅草", "梅田", "難波", "博多", "天神",
                  "那覇", "熊本", "長野", "新潟", "静岡", "岡山", "高松", "松山", "函館", "日光", "松本", "富士山",
                  "ロンドン", "パリ", "ニューヨーク", "ソウル", "台北", "リスボン"]
SUFFIX_JA = ["駅", "駅", "公園", "市役所", "病院", "図書館", "体育館", "小学校", "郵便局", "空港", "港", "神社", "寺", "温泉",
             "ショッピングモール", "区", "市", "町", "城", "動物園", "水族館", "美術館", "大学", "ホテル", "タワー", "スタジアム",
             "インター", "サービスエリア", "交差点", "商店街", "海岸", "一丁目", "二丁目", "三丁目"]
SHOP_JA = ["カフェ", "ベーカリー", "ラーメン", "書店", "薬局", "クリニック", "ジム", "レストラン", "ホテル", "スーパー", "食堂"]


def ja_place(rng):
    x = rng.random()
    if x < 0.2:
        return rng.choice(REAL_PLACES_JA)
    if x < 0.35:
        return rng.choice(PLACE_A) + rng.choice(PLACE_B)
    if x < 0.7:
        base = rng.choice([rng.choice(REAL_PLACES_JA), rng.choice(PLACE_A) + rng.choice(PLACE_B), ja_surname(rng)])
        return base + rng.choice(SUFFIX_JA)
    if x < 0.82:
        return rng.choice([katakana_word(rng) + rng.choice(SHOP_JA), rng.choice(SHOP_JA) + katakana_word(rng),
                           "カフェ" + katakana_word(rng)])
    if x < 0.9:
        return rng.choice(PLACE_A) + rng.choice(PLACE_B) + rng.choice(["一", "二", "三", "四", "五", "1", "2", "3"]) + "丁目"
    if x < 0.95:
        return rng.choice(REAL_PLACES_JA) + rng.choice(["の", ""]) + rng.choice(["ホテル", "オフィス", "実家", "本社", "支店"])
    return rng.choice(["会社", "自宅", "家", "実家", "学校", "空港", "駅", "病院", "ジム"])


OBJ_JA = ["牛乳", "卵", "パン", "醤油", "電池", "傘", "鍵", "財布", "資料", "お茶", "コーヒー", "お弁当", "ケーキ", "花",
          "薬", "切手", "ティッシュ", "トイレットペーパー", "お米", "野菜", "チケット", "充電器", "眼鏡", "書類", "お土産",
          "水", "ビール", "おむつ", "洗剤", "マスク", "パソコン", "本", "手紙", "荷物"]
FOOD_JA = ["ラーメン", "寿司", "焼肉", "カレー", "そば", "うどん", "ピザ", "中華", "天ぷら", "とんかつ", "パスタ", "お好み焼き"]
EVENT_JA = ["会議", "打ち合わせ", "夕飯", "ランチ", "試合", "練習", "映画", "授業", "面接", "飲み会", "発表会", "歯医者", "出張"]
ADJ_JA = ["大丈夫", "最高", "楽しかった", "遅れてる", "混んでる", "空いてる", "おいしかった", "寒い", "暑い", "すごい", "疲れた"]
JA_MSG_PATTERNS = [
    "遅れます", "{n}分遅れます", "{n}分後に着きます", "今向かってます", "{obj}を買ってきて", "{obj}を忘れないで",
    "{obj}を持ってきて", "{place}にいます", "{place}で待ってる", "{place}に着いた", "{place}で会おう", "{clock}に帰ります",
    "{clock}に迎えに来て", "{event}は{clock}からに変更", "{event}が中止になった", "{food}食べに行こう", "今日は{food}にしよう",
    "{place}の近くで渋滞してる", "{first}さん、お誕生日おめでとう", "{event}ありがとう", "{event}どうだった？",
    "{event}が終わったら電話して", "ドアの暗証番号は{code}", "{clock}に着く便です", "今{place}を出ました", "もうすぐ{place}",
    "{place}に車を停めて", "{event}は{adj}", "{event}頑張って", "ごめん、{event}に行けない", "充電が切れそう", "今どこ？",
    "{obj}が見つかった", "{obj}ありますか", "先に食べてて", "{city}に着きました", "{first}と一緒にいる", "部屋番号は{code}",
    "了解です", "ありがとう", "また明日", "今から出ます", "お疲れさまです", "{clock}で大丈夫", "{obj}は{place}にある",
]


def _clock_ja(rng):
    h = rng.randint(1, 12)
    return rng.choice([f"{h}時", f"{h}時半", f"{h}時{rng.randint(1, 59)}分", f"午後{h}時", f"午前{h}時", f"{h + 12}時"])


def ja_message(rng):
    def one():
        p = rng.choice(JA_MSG_PATTERNS)
        rep = {"{n}": lambda: str(rng.choice([5, 10, 15, 20, 30, rng.randint(2, 59)])), "{obj}": lambda: rng.choice(OBJ_JA),
               "{place}": lambda: ja_place(rng), "{clock}": lambda: _clock_ja(rng), "{event}": lambda: rng.choice(EVENT_JA),
               "{food}": lambda: rng.choice(FOOD_JA), "{first}": lambda: ja_name(rng), "{code}": lambda: str(rng.randint(100, 9999)),
               "{adj}": lambda: rng.choice(ADJ_JA), "{city}": lambda: rng.choice(REAL_PLACES_JA)}
        for k, f in rep.items():
            while k in p:
                p = p.replace(k, f(), 1)
        return p
    s = one()
    if rng.random() < 0.15:
        s = s + rng.choice(["、", "。", " "]) + one()
    return s


TODO_JA = [
    lambda r: r.choice(OBJ_JA) + "を買う", lambda r: ja_name(r) + "に電話する", lambda r: ja_name(r) + "にメールする",
    lambda r: r.choice(OBJ_JA) + "を取りに行く", lambda r: r.choice(["家賃", "電気代", "ガス代", "税金", "請求書"]) + "を払う",
    lambda r: ja_place(r) + "に行く", lambda r: r.choice(["レストラン", "ホテル", "美容院", "病院", "タクシー", "新幹線"]) + "を予約する",
    lambda r: r.choice(["植物", "花", "庭"]) + "に水をやる", lambda r: r.choice(["猫", "犬", "金魚"]) + "にエサをあげる",
    lambda r: r.choice(["車", "スマホ", "パソコン", "カメラ"]) + "を充電する", lambda r: r.choice(["薬", "水", "ビタミン"]) + "を飲む",
    lambda r: r.choice(OBJ_JA) + "を返す", lambda r: r.choice(["資料", "お弁当", "夕飯", "発表"]) + "を準備する",
    lambda r: r.choice(["部屋", "台所", "車", "お風呂"]) + "を掃除する", lambda r: r.choice(EVENT_JA) + "に出る",
    lambda r: r.choice(["子供", ja_name(r)]) + "を迎えに行く", lambda r: r.choice(["報告書", "請求書", "メール", ja_name(r) + "への手紙"]) + "を送る",
    lambda r: r.choice(["ゴミ", "洗濯物", "布団"]) + "を出す", lambda r: r.choice(FOOD_JA) + "を注文する",
    lambda r: r.choice(["パスポート", "免許", "保険"]) + "を更新する", lambda r: r.choice(OBJ_JA) + "を持っていく",
]


def ja_todo(rng):
    s = rng.choice(TODO_JA)(rng)
    if rng.random() < 0.15:
        s = rng.choice([rng.choice(EVENT_JA) + "の前に", rng.choice(EVENT_JA) + "の後で", ja_place(rng) + "で", "帰りに"]) + s
    return s


JA_PHRASE_PATTERNS = [
    "{place}はどこですか", "{obj}はいくらですか", "{obj}をください", "{obj}はありますか", "{place}を探しています",
    "{place}まで行ってください", "私の名前は{first}です", "{city}から来ました", "{place}は何時に開きますか",
    "{obj}をお願いします", "{food}が好きです", "{food}のアレルギーがあります", "{place}はここから遠いですか",
    "{obj}をなくしました", "ありがとうございます", "おはようございます", "こんばんは", "はじめまして", "すみません",
    "わかりません", "助けてください", "おいしいです", "いただきます", "ごちそうさまでした", "お会計お願いします",
    "また後で", "お元気ですか", "よろしくお願いします", "写真を撮ってもいいですか", "おやすみなさい",
]


def ja_phrase(rng):
    p = rng.choice(JA_PHRASE_PATTERNS)
    rep = {"{place}": lambda: ja_place(rng), "{obj}": lambda: rng.choice(OBJ_JA), "{first}": lambda: ja_name(rng),
           "{city}": lambda: rng.choice(REAL_PLACES_JA), "{food}": lambda: rng.choice(FOOD_JA)}
    for k, f in rep.items():
        while k in p:
            p = p.replace(k, f(), 1)
    return p


JA_WORDS = ["夜", "空", "星", "恋", "夢", "花", "風", "海", "雨", "光", "春", "夏", "秋", "冬", "月", "桜", "雪", "虹", "心", "歌",
            "青", "白", "赤", "君", "僕", "旅", "道", "声"]


def ja_title(rng):
    a, b = rng.choice(JA_WORDS), rng.choice(JA_WORDS)
    return rng.choice([f"{a}{b}", f"{a}の{b}", f"{a}に{b}", katakana_word(rng, 2, 5), f"{a}色の{b}", f"{b}を{rng.choice(['見て', '探して', '待って', '歌って'])}",
                       f"{katakana_word(rng)}の{a}", title_en(rng)])


def ja_media(rng, kind):
    if kind == "artist":
        return rng.choice([ja_surname(rng) + ja_given(rng), katakana_word(rng, 3, 5), en_media(rng, "artist"),
                           rng.choice(["米津玄師", "宇多田ヒカル", "あいみょん", "星野源", "スピッツ", "YOASOBI", "嵐", "Perfume"]),
                           "".join(rng.choice(HIRA) for _ in range(rng.randint(2, 4)))])
    if kind in ("song", "album"):
        return ja_title(rng)
    if kind == "playlist":
        return rng.choice([rng.choice(JA_WORDS) + "の" + rng.choice(["歌", "曲", "音楽"]), rng.choice(["ドライブ", "作業用", "朝", "睡眠用",
                           "カフェ", "雨の日", "アニソン", "ジャズ", "J-POP", "90年代", "懐メロ"]), katakana_word(rng), rng.choice(GENRE_EN)])
    if kind == "podcast":
        return rng.choice([rng.choice(["ニュース", "歴史", "科学", "経済", "映画", "英語", "旅"]) + rng.choice(["ラジオ", "の時間", "トーク", ""]),
                           katakana_word(rng) + "ラジオ", ja_surname(rng) + "の" + rng.choice(["雑談", "話", "ラジオ"]), en_media(rng, "podcast")])
    return rng.choice(["FM" + rng.choice(REAL_PLACES_JA), rng.choice(REAL_PLACES_JA) + "ラジオ", katakana_word(rng) + "FM",
                       f"{rng.randint(76, 90)}.{rng.randint(0, 9)}FM", rng.choice(["J-WAVE", "NHK-FM", "TBSラジオ", "文化放送", "ニッポン放送"])])


APPS_JA = ["LINE", "Slack", "Gmail", "メール", "カレンダー", "Twitter", "Instagram", "Teams", "ニュース", "Outlook", "Discord",
           "メッセージ", "Facebook", "YouTube", "楽天", "PayPay", "ヤフー", "メルカリ", "Zoom", "天気"]


def app_name_ja(rng):
    if rng.random() < 0.6:
        return rng.choice(APPS_JA)
    return rng.choice([katakana_word(rng), app_name(rng)])


GEN = {
    ("name", "en"): en_name, ("name", "ja"): ja_name,
    ("place", "en"): en_place, ("place", "ja"): ja_place,
    ("msg", "en"): en_message, ("msg", "ja"): ja_message,
    ("todo", "en"): en_todo, ("todo", "ja"): ja_todo,
    ("phrase", "en"): en_phrase, ("phrase", "ja"): ja_phrase,
    ("app", "en"): app_name, ("app", "ja"): app_name_ja,
}


# A share of the training values is noise: random words or characters that no pattern could predict, so
# the only way to get them right is to copy them from the request (a model otherwise learns to write a
# plausible pool value: "thank you" -> "thank you very much", "4512" -> "4245").
NOISE_P = 0.2
NOISE_EN = ADJ_EN + NOUN_EN + [w for o in OBJ_EN for w in o.split()] + CITIES_EN + PLACE_NOUN
NOISE_JA = SURNAME_A + SURNAME_B + GIVEN_A + PLACE_A + PLACE_B + HIRA + KATA + JA_WORDS


# Wide noise: letters and characters outside every pool, so that copying, not the pools'
# statistics, is what the model learns: any letter string, upper-case acronyms ("COTEN", "J-WAVE"), codes
# ("T5", "B-12"), every kana (small ones and the long mark included) and kanji from the whole CJK block
# (most of them are not tokens of the 2048 vocabulary, so they are copied as their three UTF-8 bytes).
NOISE_WIDE = True
LETTERS = "abcdefghijklmnopqrstuvwxyz"
HIRA_ALL = [chr(c) for c in range(0x3041, 0x3094)] + ["ー"]
KATA_ALL = [chr(c) for c in range(0x30A1, 0x30F5)] + ["ー"]


def letter_word(rng):
    w = "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 8)))
    x = rng.random()
    return w.upper() if x < 0.35 else w.capitalize() if x < 0.75 else w


def code_word(rng):
    a = "".join(rng.choice(LETTERS.upper()) for _ in range(rng.randint(1, 3)))
    return a + rng.choice(["", "-", " "]) + str(rng.randint(1, 999)) if rng.random() < 0.7 else a + "-" + letter_word(rng).upper()


def noise_en(rng):
    words = []
    for _ in range(rng.randint(1, 6)):
        x = rng.random()
        if NOISE_WIDE and x < 0.3:
            words.append(letter_word(rng) if x < 0.22 else code_word(rng))
            continue
        words.append(synth_word(rng) if x < 0.5 else str(rng.randint(0, 9999)) if x < 0.58 else rng.choice(NOISE_EN))
    s = " ".join(words)
    return s[:1].upper() + s[1:] if rng.random() < 0.5 else s


def wide_ja_unit(rng):
    x = rng.random()
    if x < 0.3:
        return rng.choice(HIRA_ALL)
    if x < 0.55:
        return rng.choice(KATA_ALL)
    if x < 0.75:
        return chr(rng.randint(0x4E00, 0x9FA5))
    if x < 0.9:
        return rng.choice(NOISE_JA)
    return letter_word(rng).upper() if rng.random() < 0.7 else str(rng.randint(1, 99))


def noise_ja(rng):
    if NOISE_WIDE and rng.random() < 0.5:
        return "".join(wide_ja_unit(rng) for _ in range(rng.randint(2, 7)))
    s = "".join(rng.choice(NOISE_JA) for _ in range(rng.randint(2, 9)))
    if rng.random() < 0.2:
        s += str(rng.randint(1, 999))
    return s


def value(rng, split, kind, lang):
    if split == "train" and kind != "app" and rng.random() < NOISE_P:
        return draw(rng, split, noise_en if lang == "en" else noise_ja)
    return draw(rng, split, GEN[(kind, lang)])


def media_value(rng, split, kind, lang):
    if split == "train" and rng.random() < NOISE_P:
        return draw(rng, split, noise_en if lang == "en" else noise_ja)
    return draw(rng, split, lambda r: (en_media if lang == "en" else ja_media)(r, kind))
