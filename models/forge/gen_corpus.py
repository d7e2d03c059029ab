"""Synthetic English + Japanese corpus for the assist-moe demo model.

Reads models/assist-moe/tools.json, writes models/assist-moe/data/{train,valid,test,calib}.jsonl.
Deterministic (seed).  The test split uses phrasings (templates) and slot values (names,
places, texts, some numbers) that never occur in train; valid is drawn like test with
another seed.

Conventions for indirect requests (the catalogue needs concrete values):
  cold -> 24 C, freezing -> 26 C, hot -> 20 C, boiling -> 18 C; "my side"/no zone -> driver,
  "in here/everyone" -> all.  Seat heater "on" -> 2, low 1, high/max 3.  Window "a bit" -> 20,
  halfway 50, fully 100, close 0.  Notifications without a count -> 5, "the latest" -> 1.
  Navigation without a mode -> drive (walk if the system message says smart glasses).
"""
import argparse
import json
import os
import random
import re

import values as V
import grammar as G

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL_DIR = os.path.join(ROOT, "models", "assist-moe")

# ----------------------------------------------------------------------------- numbers
EN_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
EN_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def en_words(n):
    if n < 20:
        return EN_ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return EN_TENS[t] + ("" if o == 0 else "-" + EN_ONES[o])
    h, r = divmod(n, 100)
    return EN_ONES[h] + " hundred" + ("" if r == 0 else " and " + en_words(r))


JA_D = ["〇", "一", "二", "三", "四", "五", "六", "七", "八", "九"]


def ja_kanji(n):
    if n == 0:
        return "ゼロ"
    s = ""
    h, r = divmod(n, 100)
    if h:
        s += ("" if h == 1 else JA_D[h]) + "百"
    t, o = divmod(r, 10)
    if t:
        s += ("" if t == 1 else JA_D[t]) + "十"
    if o:
        s += JA_D[o]
    return s


FW = str.maketrans("0123456789.", "０１２３４５６７８９．")


def en_num(rng, n, words_p=0.3):
    return en_words(n) if rng.random() < words_p else str(n)


def ja_num(rng, n, kanji_p=0.3):
    r = rng.random()
    if r < kanji_p:
        return ja_kanji(n)
    if r < kanji_p + 0.06:
        return str(n).translate(FW)
    return str(n)


# ----------------------------------------------------------------------------- value pools
# every pool is split: items with index % 4 == 3 are test-only
def split_pool(items, split):
    if split == "train":
        return [x for i, x in enumerate(items) if i % 4 != 3]
    return [x for i, x in enumerate(items) if i % 4 == 3]


EN_NAMES = ["Alice", "Bob", "Emma", "James", "Olivia", "Liam", "Sophia", "Noah", "Mia", "Lucas", "Charlotte",
            "Ethan", "Amelia", "Mason", "Harper", "Logan", "Evelyn", "Daniel", "Grace", "Henry", "Chloe", "Jack",
            "Lily", "Owen", "Zoe", "Ryan", "Nora", "Sam", "Hannah", "Leo", "Mom", "Dad", "Grandma", "Uncle Joe",
            "Sarah Connor", "John Smith", "Maria Garcia", "David Lee", "Kenji", "Yuki", "Tanaka", "Aiko Sato",
            "Dr. Brown", "Professor Miller", "Priya", "Mohammed", "Chen Wei", "Isabella", "Oscar", "Ruby",
            "Felix", "Ava Johnson", "Tom", "Kate", "Mike", "Laura", "Peter Parker", "Anna", "Max", "Ellie"]
JA_NAMES = ["田中", "佐藤", "鈴木", "高橋", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田",
            "佐々木", "松本", "井上", "木村", "林", "清水", "山口", "森", "池田", "橋本", "石川", "前田",
            "藤田", "岡田", "後藤", "長谷川", "村上", "近藤", "花子", "太郎", "さくら", "健太", "美咲", "翔太",
            "ゆうき", "あやか", "大輔", "結衣", "ジョン", "マイク", "エミリー", "母", "父", "妻", "夫", "部長",
            "田中太郎", "鈴木一郎", "山田花子", "ひろし", "まゆみ", "直樹", "恵子", "拓也", "リサ", "トム"]
JA_HON = ["", "", "さん", "さん", "ちゃん", "くん"]

EN_PLACES = ["Tokyo Station", "Shibuya", "the airport", "Central Park", "Osaka", "Kyoto", "Yokohama", "Sapporo",
             "Nagoya", "Fukuoka", "Kobe", "Nara", "London", "Paris", "Berlin", "New York", "San Francisco",
             "Seattle", "Boston", "Chicago", "Sydney", "the Louvre", "Haneda Airport", "Narita Airport",
             "Shinjuku", "Ginza", "Akihabara", "Union Square", "Golden Gate Park", "123 Main Street", "the office",
             "Times Square", "the train station", "Hakone", "Kamakura", "Hiroshima", "Sendai", "Okinawa",
             "Madrid", "Rome", "Vienna", "Toronto", "the city hall", "Shibuya Crossing", "Tokyo Tower",
             "the Grand Hotel", "Lake Ashi", "45 Baker Street", "the stadium", "Asakusa", "Roppongi Hills",
             "Seoul", "Taipei", "Honolulu", "Kanazawa", "the museum of modern art", "Dublin", "Lyon"]
JA_PLACES = ["東京駅", "渋谷", "新宿", "大阪", "京都", "名古屋", "横浜", "札幌", "福岡", "神戸", "奈良", "仙台",
             "広島", "金沢", "羽田空港", "成田空港", "東京タワー", "浅草寺", "秋葉原", "銀座", "池袋", "品川駅",
             "梅田", "難波", "箱根", "軽井沢", "富士山", "鎌倉", "横浜中華街", "ディズニーランド", "会社", "自宅",
             "那覇", "熊本", "長野", "新潟", "静岡", "岡山", "高松", "松山", "函館", "日光", "伊勢神宮", "沖縄",
             "大阪城", "清水寺", "スカイツリー", "六本木ヒルズ", "ロンドン", "パリ", "ニューヨーク", "ソウル",
             "上野動物園", "横浜スタジアム", "博多駅", "京都駅", "天神", "栄"]

EN_MEDIA = {
    "artist": ["Taylor Swift", "The Beatles", "Queen", "Miles Davis", "Daft Punk", "Adele", "Coldplay",
               "Radiohead", "Bach", "Beyoncé", "Ed Sheeran", "Nirvana", "Utada Hikaru", "YOASOBI", "King Gnu",
               "Billie Eilish", "Mozart", "Bruno Mars", "Norah Jones", "Fleetwood Mac"],
    "song": ["Bohemian Rhapsody", "Yesterday", "Hotel California", "Imagine", "Shape of You", "Let It Be",
             "Idol", "Lemon", "Blinding Lights", "Hey Jude", "Wonderwall", "Take On Me", "Yellow",
             "Dancing Queen", "Purple Rain", "Clair de Lune", "Smells Like Teen Spirit", "Fly Me to the Moon"],
    "album": ["Abbey Road", "Thriller", "Kind of Blue", "Random Access Memories", "OK Computer", "1989",
              "Nevermind", "Rumours", "Back in Black", "The Dark Side of the Moon", "21", "Parachutes",
              "Blue", "Future Nostalgia", "Currents", "Folklore"],
    "playlist": ["road trip", "chill vibes", "workout", "morning coffee", "focus", "party mix", "80s hits",
                 "jazz classics", "sleep", "summer hits", "rainy day", "study beats", "throwback", "feel good",
                 "late night drive", "top 50"],
    "podcast": ["The Daily", "Radiolab", "Hardcore History", "This American Life", "Freakonomics", "Serial",
                "Planet Money", "Hidden Brain", "Song Exploder", "99% Invisible", "Lex Fridman", "Stuff You Should Know"],
    "radio": ["BBC Radio 1", "J-WAVE", "NHK-FM", "jazz radio", "Classic FM", "NPR", "KEXP", "smooth jazz radio",
              "Radio Paradise", "news radio", "InterFM", "country radio"],
}
JA_MEDIA = {
    "artist": ["米津玄師", "宇多田ヒカル", "あいみょん", "星野源", "サザンオールスターズ", "松任谷由実", "YOASOBI",
               "back number", "Official髭男dism", "King Gnu", "椎名林檎", "スピッツ", "嵐", "Perfume",
               "ビートルズ", "テイラー・スウィフト", "坂本龍一", "久石譲", "aiko", "ミスチル"],
    "song": ["Lemon", "夜に駆ける", "恋", "マリーゴールド", "First Love", "アイドル", "上を向いて歩こう",
             "チェリー", "Pretender", "白日", "残酷な天使のテーゼ", "糸", "ロビンソン", "さくら", "花束を君に",
             "ドライフラワー", "天体観測", "レット・イット・ビー"],
    "album": ["ファンタジー", "STRAY SHEEP", "THE BOOK", "無罪モラトリアム", "Fantôme", "YELLOW DANCER",
              "CEREMONY", "アビイ・ロード", "深海", "POP VIRUS", "SICK", "Traveler", "BOOTLEG", "瞬間的シックスセンス",
              "勝訴ストリップ", "Editorial"],
    "playlist": ["ドライブ", "作業用", "朝の", "リラックス", "懐メロ", "J-POP", "ヒット曲", "カフェ", "睡眠用", "夏",
                 "雨の日", "元気が出る", "アニソン", "ジャズ", "90年代", "お気に入り"],
    "podcast": ["ニュース", "COTEN RADIO", "歴史", "英語学習", "ビジネス", "オールナイトニッポン", "科学", "映画",
                "経済", "旅", "落語", "テクノロジー"],
    "radio": ["J-WAVE", "NHK-FM", "TBSラジオ", "文化放送", "FM横浜", "ニッポン放送", "NHKラジオ第1", "ラジオNIKKEI",
              "interfm", "FM大阪", "TOKYO FM", "bayfm"],
}

EN_MSGS = ["I'm running late", "I'll be there in 10 minutes", "Can you pick up milk?", "Happy birthday!",
           "See you at the station", "The meeting is moved to 3", "Call me when you're free", "I'm on my way",
           "Don't forget the tickets", "Dinner is ready", "Traffic is terrible, start without me", "Love you",
           "Where are you?", "Running 5 minutes behind", "Thanks for today", "I just landed",
           "Can we reschedule?", "Leaving the office now", "Almost home", "Park at the north entrance",
           "Bring an umbrella", "Good luck with the exam", "I'll call you back", "Save me a seat",
           "The kids are asleep", "Let's meet at noon", "I found your keys", "Order pizza for me",
           "Be there at 7", "Miss you", "Running out of battery", "Meet me at the cafe", "Got the groceries",
           "I'm stuck in traffic", "See you tomorrow", "Sorry, I can't make it tonight"]
JA_MSGS = ["遅れます", "今向かってます", "10分後に着きます", "牛乳を買ってきて", "お誕生日おめでとう", "駅で待ってて",
           "会議は3時からに変更", "後で電話するね", "もうすぐ着く", "先に食べてて", "ありがとう",
           "渋滞してるので少し遅れます", "今どこ？", "傘を持ってきて", "夕飯いらない", "今から帰ります",
           "駐車場に着いた", "お疲れさまです", "明日よろしくお願いします", "鍵を忘れた", "迎えに来て",
           "少し遅れそうです", "お土産買ったよ", "電車が止まってる", "会議に間に合いません", "今日は残業です",
           "ご飯できたよ", "了解です", "着いたら連絡して", "充電が切れそう", "入口で待ってます", "寝坊しました",
           "ケーキ買って帰るね", "風邪ひいたので休みます", "また明日", "今から出ます"]

EN_TODO = ["call the bank", "take my medicine", "pick up the kids", "buy groceries", "water the plants",
           "submit the report", "check the oven", "feed the cat", "book a table", "charge the car", "pay the rent",
           "email Sarah", "stretch", "walk the dog", "call Grandma", "buy flowers", "take out the trash",
           "join the team call", "renew my passport", "move the car", "drink water", "pick up the dry cleaning",
           "send the invoice", "prepare the slides", "leave for the airport", "check in for my flight",
           "buy a birthday gift", "call the dentist", "lock the door", "start the laundry", "fill up the tank",
           "review the contract"]
JA_TODO = ["銀行に電話する", "薬を飲む", "子供を迎えに行く", "買い物に行く", "植物に水をやる", "報告書を出す",
           "ゴミを出す", "猫にエサをあげる", "レストランを予約する", "車を充電する", "家賃を払う", "メールを送る",
           "ストレッチする", "犬の散歩", "おばあちゃんに電話する", "花を買う", "洗濯物を取り込む", "会議に出る",
           "パスポートを更新する", "車を移動する", "水を飲む", "クリーニングを取りに行く", "請求書を送る",
           "資料を準備する", "空港に出発する", "チェックインする", "プレゼントを買う", "歯医者に電話する",
           "鍵をかける", "洗濯をする", "ガソリンを入れる", "契約書を確認する"]

EN_PHRASES = ["Where is the station?", "Thank you very much", "How much is this?", "I would like a coffee",
              "Good morning", "Nice to meet you", "Where is the bathroom?", "The bill, please", "I'm lost",
              "Can you help me?", "This is delicious", "I have a reservation", "Do you speak English?",
              "One ticket, please", "What time does it open?", "I'm allergic to nuts", "Excuse me",
              "See you later", "How are you?", "Please call a taxi", "Is this seat taken?", "Water, please",
              "Where can I buy a ticket?", "I don't understand"]
JA_PHRASES = ["ありがとうございます", "駅はどこですか", "これはいくらですか", "おはようございます", "はじめまして",
              "トイレはどこですか", "お会計お願いします", "道に迷いました", "助けてください", "美味しいです",
              "予約しています", "英語を話せますか", "切符を一枚ください", "何時に開きますか", "すみません",
              "また後で", "お元気ですか", "タクシーを呼んでください", "この席は空いていますか", "水をください",
              "よろしくお願いします", "わかりません", "写真を撮ってもいいですか", "おやすみなさい"]

LANG_EN = {"en": ["English"], "ja": ["Japanese"], "zh": ["Chinese", "Mandarin"], "ko": ["Korean"],
           "fr": ["French"], "de": ["German"], "es": ["Spanish"]}
LANG_JA = {"en": ["英語"], "ja": ["日本語"], "zh": ["中国語"], "ko": ["韓国語"], "fr": ["フランス語"],
           "de": ["ドイツ語"], "es": ["スペイン語"]}

EN_APPS = ["Slack", "LINE", "Gmail", "WhatsApp", "Messages", "Calendar", "Twitter", "Instagram", "Teams",
           "Outlook", "Discord", "Telegram", "Signal", "Facebook", "Reddit", "YouTube"]
JA_APPS = ["LINE", "Slack", "Gmail", "メール", "カレンダー", "Twitter", "Instagram", "Teams", "ニュース",
           "Outlook", "Discord", "メッセージ", "Facebook", "YouTube", "楽天", "PayPay"]

# held-out numeric values (test only)
HELD_NUM = {"percent": {37, 63, 85, 45}, "minutes": {17, 45, 75, 130}, "celsius": {23.5, 19.0}}

# ----------------------------------------------------------------------------- slot fillers


class Ctx:
    def __init__(self, rng, lang, split):
        self.rng, self.lang, self.split = rng, lang, split

    def pick(self, pool):
        return self.rng.choice(split_pool(pool, self.split))

    def num(self, lo, hi, kind=None, step=1):
        held = sorted(v for v in HELD_NUM.get(kind, set()) if lo <= v <= hi)
        if self.split != "train" and held and self.rng.random() < 0.3:
            return self.rng.choice(held)
        while True:
            v = self.rng.randrange(lo, hi + 1, step)
            if self.split == "train" and v in held:
                continue
            return v

    def n(self, v, words_p=0.3):
        return en_num(self.rng, v, words_p) if self.lang == "en" else ja_num(self.rng, v, words_p)


def celsius_value(ctx):
    while True:
        v = ctx.rng.randrange(32, 61) / 2.0
        if ctx.split == "train" and v in HELD_NUM["celsius"]:
            continue
        return v


def celsius_surface(ctx, v):
    r = ctx.rng
    whole = v == int(v)
    iv = int(v)
    if ctx.lang == "en":
        if whole:
            return r.choice([f"{iv} degrees", f"{iv}", f"{iv}°", f"{iv}°C", f"{en_words(iv)} degrees",
                             f"{en_words(iv)}", f"{iv} degrees Celsius"])
        return r.choice([f"{v} degrees", f"{v}", f"{v}°C", f"{en_words(iv)} and a half degrees",
                         f"{en_words(iv)} point five", f"{iv} and a half degrees"])
    if whole:
        return r.choice([f"{iv}度", f"{iv}度", f"{ja_kanji(iv)}度", f"{iv}℃", f"{str(iv).translate(FW)}度"])
    return r.choice([f"{v}度", f"{iv}度半", f"{ja_kanji(iv)}度半", f"{v}℃", f"{ja_kanji(iv)}点五度"])


def fmt_celsius(v):
    return int(v) if v == int(v) else v


def minutes_surface(ctx, m):
    r = ctx.rng
    en = ctx.lang == "en"
    h, mm = divmod(m, 60)
    opts = []
    if en:
        opts.append(f"{ctx.n(m)} minutes" if m != 1 else r.choice(["one minute", "1 minute", "a minute"]))
        if m == 60:
            opts += ["an hour", "one hour", "1 hour", "sixty minutes"]
        if m == 30:
            opts += ["half an hour", "thirty minutes"]
        if m == 90:
            opts += ["an hour and a half", "one and a half hours", "1.5 hours"]
        if m == 15:
            opts += ["a quarter of an hour", "fifteen minutes"]
        if mm == 0 and h >= 2:
            opts += [f"{ctx.n(h)} hours"]
        if h >= 1 and mm and m != 90:
            opts += [f"{'an hour' if h == 1 else ctx.n(h) + ' hours'} and {ctx.n(mm)} minutes"]
    else:
        opts.append(f"{ctx.n(m)}分")
        if m == 60:
            opts += ["1時間", "一時間"]
        if m == 30:
            opts += ["30分", "三十分", "半時間"]
        if m == 90:
            opts += ["1時間半", "一時間半"]
        if mm == 0 and h >= 2:
            opts += [f"{ctx.n(h)}時間"]
        if h >= 1 and mm and m != 90:
            opts += [f"{ctx.n(h)}時間{ctx.n(mm)}分"]
        if h >= 1 and mm == 30 and m != 90:
            opts += [f"{ctx.n(h)}時間半"]
    return r.choice(opts)


def minutes_value(ctx):
    r = ctx.rng
    while True:
        m = r.choice([r.randint(1, 60), r.randint(1, 180), r.choice([5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 3, 25, 40])])
        held = m in HELD_NUM["minutes"]
        if ctx.split == "train" and held:
            continue
        return m


def time_value(ctx):
    r = ctx.rng
    h = r.randint(0, 23)
    m = r.choice([0, 0, 0, 30, 30, 15, 45, r.randrange(0, 60, 5), r.randint(0, 59)])
    return h, m


def time_surface(ctx, h, m):
    r = ctx.rng
    opts = []
    h12 = h % 12 or 12
    if ctx.lang == "en":
        ap = "am" if h < 12 else "pm"
        AP = r.choice([ap, ap.upper(), ap[0] + "." + ap[1] + ".", " " + ap, " " + ap.upper()])
        if m == 0:
            opts += [f"{h12}{AP}", f"{h12} o'clock {'in the morning' if h < 12 else ('in the afternoon' if h < 18 else 'in the evening')}"]
            if h == 12:
                opts += ["noon", "midday"]
            if h == 0:
                opts += ["midnight"]
        else:
            opts += [f"{h12}:{m:02d}{AP}"]
            if m == 30:
                opts += [f"half past {en_words(h12)} {'in the morning' if h < 12 else ('in the afternoon' if h < 18 else 'in the evening')}"]
            if m == 15:
                opts += [f"quarter past {h12}{AP}"]
            if m == 45 and h < 23:
                nh = (h + 1) % 12 or 12
                opts += [f"quarter to {nh}{'am' if h + 1 < 12 else 'pm'}"]
        opts += [f"{h:02d}:{m:02d}", f"{h}:{m:02d}"]
    else:
        if h < 12:
            pre = r.choice(["午前", "朝"]) if h >= 5 else r.choice(["午前", "夜中の"])
        else:
            pre = r.choice(["午後", "夕方", "夜"]) if h >= 17 else "午後"
            if h < 17:
                pre = "午後"
        hh = h12 if h != 12 else 12
        if h == 0:
            hh = 0
        hs = ctx.n(hh) if hh else "0"
        if m == 0:
            opts += [f"{pre}{hs}時", f"{ctx.n(h)}時"]
            if h == 12:
                opts += ["正午", "昼の12時"]
        else:
            ms = ctx.n(m)
            opts += [f"{pre}{hs}時{ms}分", f"{ctx.n(h)}時{ms}分"]
            if m == 30:
                opts += [f"{pre}{hs}時半", f"{ctx.n(h)}時半"]
        opts += [f"{h}:{m:02d}"]
    return r.choice(opts)


# ----------------------------------------------------------------------------- templates
# A template is (pattern, fixed_args, kind).  kind "cmd" patterns get politeness wrappers.
# Slots: {zone} {temp} {lvl} {pct} {name} {text} {place} {q} {min} {time} {lang} {app} {cnt} {sec}

def T(p, fixed=None, kind="cmd"):
    return (p, fixed or {}, kind)


ZONES_EN = {"driver": ["the driver side", "the driver's side", "my side", "the driver seat", "driver"],
            "passenger": ["the passenger side", "the passenger seat", "the passenger's side", "passenger"],
            "rear": ["the back", "the rear seats", "the back seats", "the rear"],
            "all": ["everywhere", "the whole car", "all zones", "the entire cabin", "all seats"]}
ZONES_JA = {"driver": ["運転席", "運転席側", "私の席", "ドライバー席"],
            "passenger": ["助手席", "助手席側"],
            "rear": ["後部座席", "後ろの席", "後席"],
            "all": ["全体", "車内全体", "全席", "全部の席"]}
SEATS_EN = {"driver": ["my seat", "the driver seat", "the driver's seat", "my"], "passenger": ["the passenger seat", "passenger"]}
SEATS_JA = {"driver": ["運転席", "私の席", "自分の席"], "passenger": ["助手席"]}
WIN_EN = {"driver": ["my window", "the driver window", "the driver's window"],
          "passenger": ["the passenger window", "the passenger side window"],
          "rear_left": ["the rear left window", "the back left window", "the left rear window"],
          "rear_right": ["the rear right window", "the back right window", "the right rear window"],
          "all": ["all the windows", "all windows", "every window", "the windows"]}
WIN_JA = {"driver": ["運転席の窓", "自分の窓", "運転席側の窓"], "passenger": ["助手席の窓", "助手席側の窓"],
          "rear_left": ["左後ろの窓", "後部座席左の窓", "左後方の窓"],
          "rear_right": ["右後ろの窓", "後部座席右の窓", "右後方の窓"],
          "all": ["全部の窓", "すべての窓", "窓全部", "全ての窓"]}
CAT_EN = {"charging_station": ["charging station", "EV charger", "place to charge", "charger"],
          "gas_station": ["gas station", "petrol station", "place to get gas", "fuel station"],
          "parking": ["parking lot", "parking", "car park", "place to park"],
          "restaurant": ["restaurant", "place to eat", "diner"],
          "cafe": ["cafe", "coffee shop", "café"],
          "hospital": ["hospital", "emergency room", "clinic"],
          "restroom": ["restroom", "toilet", "bathroom", "public toilet"],
          "convenience_store": ["convenience store", "7-Eleven", "corner shop"]}
CAT_JA = {"charging_station": ["充電スタンド", "充電ステーション", "EV充電器", "充電できる所"],
          "gas_station": ["ガソリンスタンド", "給油所", "スタンド"],
          "parking": ["駐車場", "パーキング", "車を停められる所"],
          "restaurant": ["レストラン", "ご飯屋さん", "食事できる所", "飲食店"],
          "cafe": ["カフェ", "喫茶店", "コーヒーショップ"],
          "hospital": ["病院", "救急病院", "クリニック"],
          "restroom": ["トイレ", "お手洗い", "化粧室"],
          "convenience_store": ["コンビニ", "コンビニエンスストア", "セブンイレブン"]}
KIND_EN = {"artist": ["songs by {q}", "some {q}", "music by {q}", "{q}", "the artist {q}"],
           "song": ["the song {q}", "{q}", "the track {q}"],
           "album": ["the album {q}", "{q} the album", "the record {q}"],
           "playlist": ["my {q} playlist", "the {q} playlist", "a {q} playlist"],
           "podcast": ["the podcast {q}", "the latest episode of {q}", "{q} podcast"],
           "radio": ["{q}", "the radio station {q}", "{q} on the radio"]}
KIND_JA = {"artist": ["{q}の曲", "{q}の音楽", "{q}", "アーティストの{q}"],
           "song": ["「{q}」という曲", "曲の「{q}」", "{q}って曲", "「{q}」"],
           "album": ["アルバム「{q}」", "{q}ってアルバム", "アルバムの{q}"],
           "playlist": ["{q}のプレイリスト", "プレイリスト「{q}」", "{q}プレイリスト"],
           "podcast": ["ポッドキャストの{q}", "{q}のポッドキャスト", "ポッドキャスト「{q}」"],
           "radio": ["ラジオの{q}", "{q}のラジオ", "{q}"]}

EN = {
    "set_temperature": [
        T("set the temperature to {temp}"), T("set {zone} to {temp}"), T("make {zone} {temp}"),
        T("change the temperature on {zone} to {temp}"), T("turn the heat on {zone} to {temp}"),
        T("set the climate for {zone} at {temp}"), T("{zone} temperature {temp}", kind="free"),
        T("I want {zone} at {temp}", kind="free"), T("adjust {zone} to {temp}"),
        T("put the AC on {temp} for {zone}"), T("cabin temperature {temp} for {zone}", kind="free"),
        T("can you make it {temp} on {zone}?", kind="free"),
        T("I'm freezing on my side", {"zone": "driver", "celsius": 26}, "free"),
        T("I'm cold", {"zone": "driver", "celsius": 24}, "free"),
        T("it's too hot for me", {"zone": "driver", "celsius": 20}, "free"),
        T("it's boiling in here", {"zone": "all", "celsius": 18}, "free"),
        T("everyone is cold in here, warm it up", {"zone": "all", "celsius": 24}, "free"),
        T("my passenger says she's cold", {"zone": "passenger", "celsius": 24}, "free"),
        T("the kids in the back are too hot", {"zone": "rear", "celsius": 20}, "free"),
        T("it's a bit chilly on my side", {"zone": "driver", "celsius": 24}, "free"),
        T("I'm sweating", {"zone": "driver", "celsius": 20}, "free"),
        T("the passenger is freezing", {"zone": "passenger", "celsius": 26}, "free"),
        T("it's way too warm in the whole car", {"zone": "all", "celsius": 18}, "free"),
        T("heat up the back seats a little", {"zone": "rear", "celsius": 24}),
    ],
    "set_fan_speed": [
        T("set the fan to {lvl}"), T("fan speed {lvl}", kind="free"), T("change the fan speed to level {lvl}"),
        T("put the blower on {lvl}"), T("turn the fan to level {lvl}"), T("fan level {lvl}", kind="free"),
        T("turn off the fan", {"level": 0}), T("switch the fan off", {"level": 0}),
        T("max out the fan", {"level": 7}), T("fan on full blast", {"level": 7}, "free"),
        T("the fan is too loud, turn it down to {lvl}", kind="free"), T("blow harder, level {lvl}", kind="free"),
        T("set the ventilation to {lvl}"), T("kill the fan", {"level": 0}), T("I want the fan at {lvl}", kind="free"),
        T("lowest fan speed", {"level": 1}, "free"),
    ],
    "set_seat_heater": [
        T("set {seat} heater to {lvl}"), T("turn on the seat heater for {seat} at level {lvl}"),
        T("seat heating {lvl} for {seat}", kind="free"), T("warm up {seat}", {"level": 2}),
        T("turn off {seat} heater", {"level": 0}), T("heat {seat} on high", {"level": 3}),
        T("put {seat} warmer on low", {"level": 1}), T("my butt is cold", {"seat": "driver", "level": 2}, "free"),
        T("switch off the seat heating for {seat}", {"level": 0}), T("seat heater level {lvl} on {seat}", kind="free"),
        T("max seat heat for {seat}", {"level": 3}, "free"), T("the passenger wants a warm seat", {"seat": "passenger", "level": 2}, "free"),
        T("change the heated seat for {seat} to {lvl}"), T("my seat is too hot", {"seat": "driver", "level": 0}, "free"),
    ],
    "set_window": [
        T("open {window} {pct}"), T("set {window} to {pct} open"), T("open {window} halfway", {"percent": 50}),
        T("close {window}", {"percent": 0}), T("crack {window} a bit", {"percent": 20}),
        T("roll down {window} all the way", {"percent": 100}), T("put {window} at {pct}"),
        T("roll up {window}", {"percent": 0}), T("lower {window} to {pct}"),
        T("it's stuffy, open the windows a bit", {"window": "all", "percent": 20}, "free"),
        T("open {window} fully", {"percent": 100}), T("shut {window}", {"percent": 0}),
        T("I need some fresh air", {"window": "driver", "percent": 20}, "free"),
        T("{window} {pct} open please", kind="free"), T("open {window} a little", {"percent": 20}),
        T("it's raining, close all the windows", {"window": "all", "percent": 0}, "free"),
    ],
    "set_drive_mode": [
        T("switch to {mode} mode"), T("{mode} mode", kind="free"), T("change the drive mode to {mode}"),
        T("put the car in {mode} mode"), T("drive mode {mode}", kind="free"), T("activate {mode} mode"),
        T("I want to save fuel", {"mode": "eco"}, "free"), T("let's have some fun on this road", {"mode": "sport"}, "free"),
        T("make the ride smoother", {"mode": "comfort"}), T("I want better mileage", {"mode": "eco"}, "free"),
        T("give me more power", {"mode": "sport"}), T("a relaxed ride please", {"mode": "comfort"}, "free"),
        T("set driving mode to {mode}"), T("go into {mode}"), T("save battery, use the efficient mode", {"mode": "eco"}, "free"),
    ],
    "set_lights": [
        T("turn the headlights {state}"), T("headlights {state}", kind="free"), T("switch the lights {state}"),
        T("set the headlights to auto", {"state": "auto"}), T("lights on", {"state": "on"}, "free"),
        T("it's getting dark", {"state": "on"}, "free"), T("I can't see the road", {"state": "on"}, "free"),
        T("turn off the headlights", {"state": "off"}), T("put the lights on automatic", {"state": "auto"}),
        T("let the car decide the headlights", {"state": "auto"}), T("switch on the headlamps", {"state": "on"}),
        T("kill the headlights", {"state": "off"}), T("we're entering a tunnel, lights please", {"state": "on"}, "free"),
        T("set lights to {state}"),
    ],
    "find_nearby": [
        T("find a {cat} nearby"), T("where is the nearest {cat}?", kind="free"), T("is there a {cat} around here?", kind="free"),
        T("search for a {cat}"), T("show me {cat}s near me"), T("look for the closest {cat}"),
        T("I need a {cat}", kind="free"), T("take me to a {cat} nearby"),
        T("I'm low on battery", {"category": "charging_station"}, "free"), T("I'm hungry", {"category": "restaurant"}, "free"),
        T("I need coffee", {"category": "cafe"}, "free"), T("I really need to pee", {"category": "restroom"}, "free"),
        T("we're almost out of gas", {"category": "gas_station"}, "free"), T("where can I park?", {"category": "parking"}, "free"),
        T("I don't feel well, I need a doctor", {"category": "hospital"}, "free"),
        T("I need to grab some snacks", {"category": "convenience_store"}, "free"),
        T("the car needs charging", {"category": "charging_station"}, "free"), T("let's get lunch somewhere", {"category": "restaurant"}, "free"),
        T("any {cat} close by?", kind="free"), T("fuel is low", {"category": "gas_station"}, "free"),
    ],
    "navigate_to": [
        T("navigate to {place}"), T("take me to {place}"), T("directions to {place}"), T("how do I get to {place}?", kind="free"),
        T("drive to {place}", {"mode": "drive"}), T("walking directions to {place}", {"mode": "walk"}),
        T("I want to walk to {place}", {"mode": "walk"}, "free"), T("route to {place} by car", {"mode": "drive"}),
        T("let's go to {place}", kind="free"), T("guide me to {place} on foot", {"mode": "walk"}),
        T("start navigation to {place}"), T("head to {place}"), T("get me to {place}, driving", {"mode": "drive"}),
        T("show me the way to {place} walking", {"mode": "walk"}), T("I need to get to {place}", kind="free"),
        T("set the destination to {place}"), T("walk me to {place}", {"mode": "walk"}),
        T("plot a route to {place}"),
    ],
    "play_media": [
        T("play {media}"), T("put on {media}"), T("I want to listen to {media}", kind="free"), T("start {media}"),
        T("can I hear {media}?", kind="free"), T("queue up {media}"), T("let's listen to {media}", kind="free"),
        T("play me {media}"), T("turn on {media}"), T("music: {media}", kind="free"), T("stream {media}"),
        T("I'm in the mood for {media}", kind="free"),
    ],
    "media_control": [
        T("pause the music", {"action": "pause"}), T("pause", {"action": "pause"}, "free"), T("stop the music for a second", {"action": "pause"}),
        T("resume playback", {"action": "resume"}), T("continue the music", {"action": "resume"}), T("play again", {"action": "resume"}, "free"),
        T("next song", {"action": "next"}, "free"), T("skip this track", {"action": "next"}), T("I don't like this song", {"action": "next"}, "free"),
        T("previous track", {"action": "previous"}, "free"), T("go back a song", {"action": "previous"}), T("play the last song again", {"action": "previous"}),
        T("hold on, mute the song for now", {"action": "pause"}), T("unpause", {"action": "resume"}, "free"),
        T("skip", {"action": "next"}, "free"), T("back to the previous one", {"action": "previous"}, "free"),
        T("carry on playing", {"action": "resume"}), T("hit pause", {"action": "pause"}), T("skip ahead to the next one", {"action": "next"}),
        T("that was a great song, play it again from the previous", {"action": "previous"}, "free"),
    ],
    "set_volume": [
        T("set the volume to {pct}"), T("volume {pct}", kind="free"), T("turn the volume to {pct}"), T("change volume to {pct}"),
        T("make it {pct} volume", kind="free"), T("mute the audio", {"level": 0}), T("max volume", {"level": 100}, "free"),
        T("turn it all the way up", {"level": 100}), T("sound off", {"level": 0}, "free"), T("put the volume at {pct}"),
        T("adjust the sound level to {pct}"), T("I want the volume at {pct}", kind="free"), T("silence", {"level": 0}, "free"),
        T("lower the volume to {pct}"), T("raise the volume to {pct}"),
    ],
    "call_contact": [
        T("call {name}"), T("phone {name}"), T("dial {name}"), T("ring {name}"), T("give {name} a call"),
        T("I need to talk to {name}", kind="free"), T("get {name} on the phone"), T("make a call to {name}"),
        T("start a call with {name}"), T("call {name} for me"), T("can you ring {name}?", kind="free"),
        T("I want to call {name}", kind="free"), T("connect me to {name}"),
    ],
    "send_message": [
        T("text {name} {text}"), T("send {name} a message saying {text}"), T("message {name}: {text}"),
        T("tell {name} {text}"), T("send a text to {name} that says \"{text}\""), T("let {name} know {text}"),
        T("write to {name}: {text}"), T("send \"{text}\" to {name}"), T("shoot {name} a text: {text}"),
        T("reply to {name} with {text}"), T("text {name} saying {text}"), T("drop {name} a message: {text}"),
        T("send a message to {name}: {text}"),
    ],
    "get_weather": [
        T("what's the weather {day}?", kind="free"), T("weather in {place} {day}", kind="free"), T("will it rain {day}?", kind="free"),
        T("how's the weather in {place} {day}?", kind="free"), T("check the forecast for {place} {day}"), T("forecast {day}", kind="free"),
        T("do I need an umbrella {day}?", kind="free"), T("is it going to be sunny in {place} {day}?", kind="free"),
        T("what's the forecast {day}"), T("show me the weather {day}"), T("what will the weather be like in {place} {day}?", kind="free"),
        T("is it cold in {place} {day}?", kind="free"), T("weather {day}", kind="free"), T("tell me the weather for {place} {day}"),
    ],
    "set_timer": [
        T("set a timer for {min}"), T("timer {min}", kind="free"), T("start a {min} timer"), T("countdown {min}", kind="free"),
        T("remind me in {min}"), T("wake me up in {min}"), T("set the timer to {min}"), T("start a countdown of {min}"),
        T("I'm making instant noodles", {"minutes": 3}, "free"), T("time {min} for me"), T("let me know when {min} have passed"),
        T("give me a {min} timer"), T("alert me after {min}"), T("boiling eggs, set a timer for {min}"),
    ],
    "set_reminder": [
        T("remind me to {todo} at {time}"), T("at {time} remind me to {todo}"), T("set a reminder at {time} to {todo}"),
        T("don't let me forget to {todo} at {time}"), T("create a reminder: {todo} at {time}"),
        T("I need to {todo} at {time}, remind me", kind="free"), T("reminder at {time}: {todo}", kind="free"),
        T("can you remind me at {time} to {todo}?", kind="free"), T("make sure I {todo} at {time}"),
        T("add a reminder to {todo} for {time}"), T("ping me at {time} to {todo}"), T("remind me at {time} that I have to {todo}"),
    ],
    "translate": [
        T("translate \"{phrase}\" into {lang}"), T("how do you say \"{phrase}\" in {lang}?", kind="free"),
        T("what is \"{phrase}\" in {lang}?", kind="free"), T("translate {phrase} to {lang}"), T("say \"{phrase}\" in {lang}"),
        T("{lang} for \"{phrase}\"", kind="free"), T("can you put \"{phrase}\" into {lang}?", kind="free"),
        T("translate this into {lang}: {phrase}"), T("what does \"{phrase}\" mean in {lang}?", kind="free"),
        T("I need \"{phrase}\" in {lang}", kind="free"), T("convert \"{phrase}\" to {lang}"), T("in {lang}, how would I say \"{phrase}\"?", kind="free"),
    ],
    "capture": [
        T("take a photo", {"kind": "photo"}), T("take a picture", {"kind": "photo"}), T("snap a pic", {"kind": "photo"}),
        T("record a video", {"kind": "video"}), T("record a {sec} video", {"kind": "video"}), T("film this for {sec}", {"kind": "video"}),
        T("capture this moment", {"kind": "photo"}), T("start recording", {"kind": "video"}), T("take a {sec} clip", {"kind": "video"}),
        T("photo please", {"kind": "photo"}, "free"), T("shoot a video of this", {"kind": "video"}), T("get a picture of that", {"kind": "photo"}),
        T("record {sec} of video", {"kind": "video"}), T("I want a photo of this view", {"kind": "photo"}, "free"),
        T("make a video clip of {sec}", {"kind": "video"}), T("cheese!", {"kind": "photo"}, "free"),
    ],
    "read_notifications": [
        T("read my notifications", {"count": 5}), T("read my last {cnt} notifications"), T("any new notifications?", {"count": 5}, "free"),
        T("read the latest notification", {"count": 1}), T("what's new on {app}?", {"count": 5}, "free"),
        T("read my {cnt} latest {app} messages"), T("check {app} notifications", {"count": 5}), T("read out {cnt} notifications from {app}"),
        T("what did I miss?", {"count": 5}, "free"), T("read the last {app} notification", {"count": 1}),
        T("read me the top {cnt} alerts"), T("anything from {app}?", {"count": 5}, "free"), T("show me {cnt} notifications"),
        T("read the newest {cnt} from {app}"),
    ],
    "set_display_brightness": [
        T("set the brightness to {pct}"), T("brightness {pct}", kind="free"), T("make the display {pct} bright"),
        T("dim the display", {"percent": 30}), T("maximum brightness", {"percent": 100}, "free"), T("turn the screen brightness to {pct}"),
        T("it's too bright", {"percent": 30}, "free"), T("I can't see the display in the sun", {"percent": 100}, "free"),
        T("change the display brightness to {pct}"), T("lower the brightness to {pct}"), T("screen at {pct}", kind="free"),
        T("turn the display all the way down", {"percent": 0}), T("brighten the display to {pct}"),
    ],
}

JA = {
    "set_temperature": [
        T("{zone}を{temp}にして"), T("{zone}の温度を{temp}に設定して"), T("温度を{temp}にして"), T("エアコンを{temp}にして"),
        T("{zone}を{temp}に変えて"), T("{zone}の設定温度を{temp}に"), T("{temp}にしてほしい、{zone}", kind="free"),
        T("{zone}、{temp}で", kind="free"), T("{zone}の暖房を{temp}にして"), T("{zone}の冷房を{temp}にして"),
        T("{zone}は{temp}でお願い", kind="free"), T("車内温度{temp}、{zone}", kind="free"),
        T("寒い", {"zone": "driver", "celsius": 24}, "free"), T("暑い", {"zone": "driver", "celsius": 20}, "free"),
        T("ちょっと寒いな", {"zone": "driver", "celsius": 24}, "free"), T("凍えそう", {"zone": "driver", "celsius": 26}, "free"),
        T("暑すぎる", {"zone": "driver", "celsius": 20}, "free"), T("車の中が蒸し暑い", {"zone": "all", "celsius": 18}, "free"),
        T("みんな寒がってるから暖かくして", {"zone": "all", "celsius": 24}, "free"), T("助手席の人が寒いって", {"zone": "passenger", "celsius": 24}, "free"),
        T("後ろの子供たちが暑がってる", {"zone": "rear", "celsius": 20}, "free"), T("汗かいてきた", {"zone": "driver", "celsius": 20}, "free"),
        T("助手席が寒すぎるみたい", {"zone": "passenger", "celsius": 26}, "free"), T("後部座席を少し暖かくして", {"zone": "rear", "celsius": 24}),
    ],
    "set_fan_speed": [
        T("風量を{lvl}にして"), T("ファンを{lvl}にして"), T("風量{lvl}", kind="free"), T("ファンの強さを{lvl}に設定して"),
        T("ファンを止めて", {"level": 0}), T("風を止めて", {"level": 0}), T("風量を最大にして", {"level": 7}),
        T("ファン全開で", {"level": 7}, "free"), T("ファンがうるさいから{lvl}にして"), T("送風をレベル{lvl}に"),
        T("風量をレベル{lvl}に変えて"), T("風を一番弱くして", {"level": 1}), T("ファン切って", {"level": 0}, "free"), T("風量は{lvl}で", kind="free"),
        T("エアコンの風を{lvl}にして"),
    ],
    "set_seat_heater": [
        T("{seat}のシートヒーターを{lvl}にして"), T("{seat}のシートヒーターをつけて", {"level": 2}),
        T("{seat}のシートヒーターを消して", {"level": 0}), T("{seat}のシートヒーターを強にして", {"level": 3}),
        T("{seat}のシートヒーターを弱で", {"level": 1}), T("お尻が冷たい", {"seat": "driver", "level": 2}, "free"),
        T("{seat}のシートを温めて", {"level": 2}), T("シートヒーター{lvl}、{seat}", kind="free"), T("{seat}の座席ヒーターをレベル{lvl}に"),
        T("{seat}のシートヒーターを最大に", {"level": 3}), T("シートが熱すぎる", {"seat": "driver", "level": 0}, "free"),
        T("助手席の人がシートを温めてほしいって", {"seat": "passenger", "level": 2}, "free"), T("{seat}のシートヒーター止めて", {"level": 0}),
    ],
    "set_window": [
        T("{window}を{pct}開けて"), T("{window}を半分開けて", {"percent": 50}), T("{window}を閉めて", {"percent": 0}),
        T("{window}を少し開けて", {"percent": 20}), T("{window}を全開にして", {"percent": 100}), T("{window}を{pct}まで下げて"),
        T("{window}、{pct}で", kind="free"), T("空気がこもってる、窓を少し開けて", {"window": "all", "percent": 20}),
        T("{window}をちょっとだけ開けて", {"percent": 20}), T("{window}を完全に閉めて", {"percent": 0}),
        T("外の空気を吸いたい", {"window": "driver", "percent": 20}, "free"), T("雨が降ってきた、窓を全部閉めて", {"window": "all", "percent": 0}),
        T("{window}を{pct}にして"), T("{window}を全部開けて", {"percent": 100}),
    ],
    "set_drive_mode": [
        T("{mode}モードにして"), T("{mode}モードに切り替えて"), T("ドライブモードを{mode}に"), T("{mode}モード", kind="free"),
        T("走行モードを{mode}に変更して"), T("燃費よく走りたい", {"mode": "eco"}, "free"), T("スポーティーに走りたい", {"mode": "sport"}, "free"),
        T("乗り心地を良くして", {"mode": "comfort"}), T("ガソリンを節約したい", {"mode": "eco"}, "free"), T("もっとパワーがほしい", {"mode": "sport"}, "free"),
        T("ゆったり走りたい", {"mode": "comfort"}, "free"), T("運転モードを{mode}にして"), T("{mode}で走って"), T("バッテリーを節約して", {"mode": "eco"}),
    ],
    "set_lights": [
        T("ライトを{state}"), T("ヘッドライトを{state}"), T("ライトつけて", {"state": "on"}), T("ライト消して", {"state": "off"}),
        T("ヘッドライトをオートにして", {"state": "auto"}), T("暗くなってきた", {"state": "on"}, "free"), T("前が見えにくい", {"state": "on"}, "free"),
        T("ライトを自動にして", {"state": "auto"}), T("ヘッドライトを点灯して", {"state": "on"}), T("ヘッドライトを消灯して", {"state": "off"}),
        T("トンネルに入るからライトつけて", {"state": "on"}), T("ライトは車に任せる", {"state": "auto"}, "free"), T("ライト、{state}", kind="free"),
    ],
    "find_nearby": [
        T("近くの{cat}を探して"), T("一番近い{cat}はどこ？", kind="free"), T("この辺に{cat}ある？", kind="free"), T("{cat}を検索して"),
        T("近くに{cat}はありますか", kind="free"), T("最寄りの{cat}を教えて"), T("{cat}に行きたい", kind="free"), T("周辺の{cat}を表示して"),
        T("充電が少ない", {"category": "charging_station"}, "free"), T("お腹すいた", {"category": "restaurant"}, "free"),
        T("コーヒー飲みたい", {"category": "cafe"}, "free"), T("トイレに行きたい", {"category": "restroom"}, "free"),
        T("ガソリンがなくなりそう", {"category": "gas_station"}, "free"), T("どこに車を停めればいい？", {"category": "parking"}, "free"),
        T("気分が悪い、医者に診てもらいたい", {"category": "hospital"}, "free"), T("お菓子を買いたい", {"category": "convenience_store"}, "free"),
        T("電池が切れそう、充電したい", {"category": "charging_station"}, "free"), T("どこかでランチしよう", {"category": "restaurant"}, "free"),
        T("{cat}探して"), T("燃料が少ない", {"category": "gas_station"}, "free"),
    ],
    "navigate_to": [
        T("{place}まで案内して"), T("{place}に行きたい", kind="free"), T("{place}へのルートを教えて"), T("{place}までナビして"),
        T("{place}まで車で行って", {"mode": "drive"}), T("{place}まで歩いて行きたい", {"mode": "walk"}, "free"),
        T("{place}まで徒歩で案内して", {"mode": "walk"}), T("{place}へ行こう", kind="free"), T("{place}に連れて行って"),
        T("目的地を{place}に設定して"), T("{place}まで歩きで", {"mode": "walk"}, "free"), T("{place}への道順を教えて"),
        T("{place}まで運転して", {"mode": "drive"}), T("{place}にはどうやって行くの？", kind="free"), T("歩いて{place}まで", {"mode": "walk"}, "free"),
        T("{place}までお願い", kind="free"), T("車で{place}へ", {"mode": "drive"}, "free"), T("{place}に向かって"),
    ],
    "play_media": [
        T("{media}をかけて"), T("{media}を再生して"), T("{media}が聴きたい", kind="free"), T("{media}を流して"),
        T("{media}をお願い", kind="free"), T("{media}聴かせて"), T("{media}つけて"), T("音楽：{media}", kind="free"),
        T("{media}を聞きたいな", kind="free"), T("{media}をプレイして"), T("{media}でお願いします", kind="free"),
    ],
    "media_control": [
        T("一時停止して", {"action": "pause"}), T("音楽を止めて", {"action": "pause"}), T("ちょっと止めて", {"action": "pause"}),
        T("再開して", {"action": "resume"}), T("続きを再生して", {"action": "resume"}), T("また流して", {"action": "resume"}),
        T("次の曲", {"action": "next"}, "free"), T("スキップして", {"action": "next"}), T("この曲飽きた", {"action": "next"}, "free"),
        T("前の曲", {"action": "previous"}, "free"), T("前の曲に戻して", {"action": "previous"}), T("さっきの曲をもう一回", {"action": "previous"}, "free"),
        T("ポーズ", {"action": "pause"}, "free"), T("再生再開", {"action": "resume"}, "free"), T("次へ", {"action": "next"}, "free"),
        T("一曲戻って", {"action": "previous"}), T("曲を飛ばして", {"action": "next"}), T("音楽の続きをかけて", {"action": "resume"}),
        T("この曲好きじゃない", {"action": "next"}, "free"),
    ],
    "set_volume": [
        T("音量を{pct}にして"), T("ボリュームを{pct}に"), T("音量{pct}", kind="free"), T("音量を{pct}に設定して"),
        T("ミュートにして", {"level": 0}), T("音量を最大にして", {"level": 100}), T("音を消して", {"level": 0}),
        T("ボリューム最大", {"level": 100}, "free"), T("音量を{pct}まで下げて"), T("音量を{pct}まで上げて"), T("ボリュームは{pct}で", kind="free"),
        T("音量を{pct}に変えて"), T("消音", {"level": 0}, "free"),
    ],
    "call_contact": [
        T("{name}に電話して"), T("{name}に電話をかけて"), T("{name}に電話"), T("{name}に発信して"), T("{name}と話したい", kind="free"),
        T("{name}にコールして"), T("{name}に連絡して、電話で"), T("{name}を呼び出して"), T("{name}に電話したい", kind="free"),
        T("{name}に電話つないで"), T("{name}にかけて"), T("電話して、{name}に", kind="free"),
    ],
    "send_message": [
        T("{name}に「{text}」と送って"), T("{name}に{text}ってメッセージして"), T("{name}に「{text}」って伝えて"),
        T("{name}にメッセージ：{text}", kind="free"), T("{name}に{text}と送信して"), T("{name}へ「{text}」とメッセージを送って"),
        T("{name}に「{text}」ってLINEして"), T("メッセージを{name}に、「{text}」", kind="free"), T("{name}に{text}って送っておいて"),
        T("{name}に「{text}」と返信して"), T("{name}に「{text}」とメールして"), T("{name}へ{text}って連絡して"),
        T("「{text}」と{name}に送って"),
    ],
    "get_weather": [
        T("{day}の天気は？", kind="free"), T("{place}の{day}の天気を教えて"), T("{day}は雨が降る？", kind="free"),
        T("{day}の{place}の天気は？", kind="free"), T("{place}、{day}の天気予報", kind="free"), T("{day}の天気予報を教えて"),
        T("{day}傘いる？", kind="free"), T("{day}の{place}は晴れる？", kind="free"), T("天気予報を見せて、{day}", kind="free"),
        T("{place}は{day}寒い？", kind="free"), T("{day}の天気", kind="free"), T("{place}の天気を調べて、{day}"),
        T("{day}の天気どう？", kind="free"),
    ],
    "set_timer": [
        T("{min}のタイマーをセットして"), T("タイマー{min}", kind="free"), T("{min}後に知らせて"), T("{min}測って"),
        T("{min}のタイマーをかけて"), T("{min}経ったら教えて"), T("カップラーメン作るよ", {"minutes": 3}, "free"),
        T("{min}カウントダウンして"), T("{min}後に起こして"), T("タイマーを{min}に設定"), T("{min}でタイマーお願い", kind="free"),
        T("ゆで卵を作るから{min}のタイマー"), T("{min}計って"),
    ],
    "set_reminder": [
        T("{time}に{todo}ってリマインドして"), T("{time}に{todo}ことを思い出させて"), T("{time}に{todo}のを忘れないように教えて"),
        T("{todo}のを{time}にリマインドして"), T("リマインダー：{time}に{todo}", kind="free"), T("{time}に「{todo}」とリマインダーを設定して"),
        T("{time}になったら{todo}って教えて"), T("{time}、{todo}、リマインドお願い", kind="free"), T("{todo}ことを{time}に通知して"),
        T("{time}に{todo}予定だから知らせて"), T("{time}に{todo}って通知して"), T("{time}にリマインド：{todo}", kind="free"),
    ],
    "translate": [
        T("「{phrase}」を{lang}に翻訳して"), T("「{phrase}」って{lang}で何て言う？", kind="free"), T("{phrase}を{lang}に訳して"),
        T("{lang}で「{phrase}」はどう言うの？", kind="free"), T("「{phrase}」を{lang}にして"), T("{lang}に翻訳：{phrase}", kind="free"),
        T("「{phrase}」の{lang}訳を教えて"), T("{lang}で{phrase}って言いたい", kind="free"), T("「{phrase}」を{lang}で言って"),
        T("{phrase}、{lang}で", kind="free"), T("「{phrase}」は{lang}で？", kind="free"), T("{lang}に直して：{phrase}"),
    ],
    "capture": [
        T("写真を撮って", {"kind": "photo"}), T("写真撮って", {"kind": "photo"}), T("これ撮っておいて", {"kind": "photo"}),
        T("動画を撮って", {"kind": "video"}), T("{sec}動画を撮って", {"kind": "video"}), T("{sec}録画して", {"kind": "video"}),
        T("この景色を撮影して", {"kind": "photo"}), T("録画開始", {"kind": "video"}, "free"), T("{sec}のビデオを撮って", {"kind": "video"}),
        T("写真お願い", {"kind": "photo"}, "free"), T("ビデオを撮影して", {"kind": "video"}), T("パシャっと撮って", {"kind": "photo"}),
        T("動画を{sec}撮影して", {"kind": "video"}), T("この瞬間を写真に残して", {"kind": "photo"}), T("はい、チーズ", {"kind": "photo"}, "free"),
    ],
    "read_notifications": [
        T("通知を読んで", {"count": 5}), T("最新の通知を{cnt}件読んで"), T("新しい通知ある？", {"count": 5}, "free"),
        T("最新の通知を読んで", {"count": 1}), T("{app}の通知を読んで", {"count": 5}), T("{app}の新着を{cnt}件読み上げて"),
        T("{app}から何か来てる？", {"count": 5}, "free"), T("通知を{cnt}件読み上げて"), T("何か見逃した？", {"count": 5}, "free"),
        T("{app}の最新の通知を読んで", {"count": 1}), T("{app}の通知を{cnt}つ読んで"), T("直近{cnt}件の通知を教えて"),
        T("{app}の通知を確認して", {"count": 5}),
    ],
    "set_display_brightness": [
        T("明るさを{pct}にして"), T("画面の明るさを{pct}に"), T("輝度{pct}", kind="free"), T("ディスプレイの明るさを{pct}に設定して"),
        T("画面を暗くして", {"percent": 30}), T("明るさを最大にして", {"percent": 100}), T("まぶしい", {"percent": 30}, "free"),
        T("日差しで画面が見えない", {"percent": 100}, "free"), T("明るさを{pct}まで下げて"), T("表示の明るさを{pct}に変えて"),
        T("画面を一番暗くして", {"percent": 0}), T("ディスプレイを{pct}の明るさで", kind="free"), T("輝度を{pct}に上げて"),
    ],
}

# more phrasings (appended, so the every-4th test hold-out interleaves with the old ones)
EXTRA_EN = {
    "set_temperature": [
        T("set it to {temp} on {zone}"), T("can you set {zone} to {temp}", kind="free"), T("{temp} for {zone} please", kind="free"),
        T("warm {zone} to {temp}"), T("cool {zone} down to {temp}"), T("temperature to {temp}"),
    ],
    "set_fan_speed": [T("fan to {lvl}"), T("blower level {lvl}", kind="free"), T("make the fan speed {lvl}")],
    "set_volume": [T("volume to {pct}"), T("bring the volume to {pct}"), T("sound at {pct}", kind="free")],
    "set_display_brightness": [T("display brightness {pct}", kind="free"), T("set the screen to {pct} brightness")],
    "call_contact": [
        T("call {name} please"), T("can you get {name} on the line?", kind="free"), T("phone call to {name}", kind="free"),
        T("dial up {name}"), T("please ring {name} now"), T("I'd like to speak with {name}", kind="free"),
        T("voice call {name}"), T("call {name} on speaker"), T("try calling {name}"), T("call {name} back"),
        T("hook me up with {name} on the phone"), T("I have to call {name}", kind="free"),
    ],
    "send_message": [
        T("send {name} the message {text}"), T("text to {name}: {text}", kind="free"), T("msg {name} {text}", kind="free"),
        T("tell {name} that {text}"), T("message for {name}: {text}", kind="free"), T("send this to {name}: {text}"),
        T("compose a text to {name} saying {text}"), T("write {name} a text: {text}"), T("let {name} know that {text}"),
        T("send a quick message to {name} saying {text}"), T("text {name} and say {text}"), T("send {name} a text: {text}"),
    ],
    "navigate_to": [
        T("go to {place}"), T("drive me to {place}", {"mode": "drive"}), T("navigation to {place}", kind="free"),
        T("find the route to {place}"), T("I'm heading to {place}", kind="free"), T("bring me to {place}"),
        T("walk to {place}", {"mode": "walk"}), T("route me to {place}"), T("can you take me to {place}?", kind="free"),
        T("I'd like to go to {place}", kind="free"), T("get directions to {place}"), T("on foot to {place}", {"mode": "walk"}, "free"),
        T("navigate me to {place} by car", {"mode": "drive"}), T("walking route to {place}", {"mode": "walk"}, "free"),
    ],
    "get_weather": [
        T("weather for {place} {day}", kind="free"), T("what's it like outside {day}?", kind="free"),
        T("any rain in {place} {day}?", kind="free"), T("how hot will it be in {place} {day}?", kind="free"),
        T("give me the weather in {place} {day}"), T("forecast for {place} {day}", kind="free"),
        T("should I bring a jacket {day}?", kind="free"), T("get the weather for {place} {day}"),
        T("is it snowing in {place} {day}?", kind="free"), T("weather report {day}", kind="free"),
    ],
    "play_media": [
        T("play some {media}"), T("can you play {media}?", kind="free"), T("put {media} on"), T("I wanna hear {media}", kind="free"),
        T("shuffle {media}"), T("listen to {media}"), T("bring up {media}"), T("play {media} on the speakers"), T("fire up {media}"),
    ],
    "set_reminder": [
        T("remind me at {time} to {todo}"), T("set a reminder for {time}: {todo}"), T("{time} reminder to {todo}", kind="free"),
        T("remember to {todo} at {time}"), T("at {time} I have to {todo}, remind me", kind="free"),
        T("reminder to {todo} at {time}", kind="free"), T("please remind me to {todo} at {time}"), T("tell me to {todo} at {time}"),
        T("schedule a reminder at {time} to {todo}"), T("alert me at {time} to {todo}"), T("nudge me at {time} to {todo}"),
    ],
    "translate": [
        T("translate \"{phrase}\" to {lang}"), T("how would you say \"{phrase}\" in {lang}?", kind="free"),
        T("give me the {lang} for \"{phrase}\""), T("{lang} translation of \"{phrase}\"", kind="free"),
        T("translate to {lang}: {phrase}"), T("what's the {lang} for \"{phrase}\"?", kind="free"),
        T("render \"{phrase}\" in {lang}"), T("help me say \"{phrase}\" in {lang}"), T("translate '{phrase}' into {lang}"),
    ],
    "read_notifications": [
        T("read my {app} notifications", {"count": 5}), T("any messages on {app}?", {"count": 5}, "free"),
        T("read {cnt} notifications"), T("read the last {cnt} {app} notifications"),
        T("what are my latest {cnt} notifications?", kind="free"), T("read out my notifications", {"count": 5}),
        T("tell me my last notification", {"count": 1}), T("check my notifications", {"count": 5}),
    ],
    "set_timer": [T("{min} timer", kind="free"), T("timer for {min} please", kind="free"), T("count down {min}"),
                  T("set an alarm for {min} from now")],
}
EXTRA_JA = {
    "set_temperature": [T("{zone}を{temp}に上げて"), T("{zone}を{temp}に下げて"), T("{temp}にして、{zone}", kind="free")],
    "set_volume": [T("ボリュームを{pct}にして"), T("音量{pct}で", kind="free")],
    "call_contact": [
        T("{name}に電話お願い", kind="free"), T("{name}へ電話して"), T("{name}に電話を入れて"), T("{name}に連絡したい、電話で", kind="free"),
        T("{name}の番号にかけて"), T("{name}と通話したい", kind="free"), T("{name}に今すぐ電話して"), T("{name}に電話をつないで"),
    ],
    "send_message": [
        T("{name}に「{text}」ってメッセージ送って"), T("{name}宛てに「{text}」と送信", kind="free"),
        T("{name}にメッセージを送って、「{text}」", kind="free"), T("{name}に「{text}」ってメール", kind="free"),
        T("{name}に「{text}」とショートメールして"), T("{name}に{text}と伝えておいて"), T("{name}に「{text}」と連絡しておいて"),
        T("{name}へのメッセージ：{text}", kind="free"),
    ],
    "navigate_to": [
        T("{place}へ向かって"), T("{place}まで連れてって"), T("{place}までの道を教えて"), T("{place}に行く道を案内して"),
        T("{place}まで歩きたい", {"mode": "walk"}, "free"), T("{place}へ車で", {"mode": "drive"}, "free"), T("{place}までルート案内", kind="free"),
        T("{place}を目的地にして"), T("{place}までの行き方を教えて"), T("徒歩で{place}へ", {"mode": "walk"}, "free"),
    ],
    "get_weather": [
        T("{day}、{place}は雨？", kind="free"), T("{place}の{day}の天気予報を見せて"), T("{day}の{place}の気温は？", kind="free"),
        T("{place}って{day}晴れる？", kind="free"), T("{day}の天気を調べて"), T("{place}の天気、{day}", kind="free"),
        T("{day}は傘が必要？", kind="free"),
    ],
    "play_media": [
        T("{media}を聴こう", kind="free"), T("{media}を再生", kind="free"), T("{media}を流してほしい", kind="free"),
        T("{media}を聴かせてくれ", kind="free"), T("{media}をスタートして"),
    ],
    "set_reminder": [
        T("{time}に{todo}と通知して"), T("{time}に{todo}ってお知らせして"), T("{time}に{todo}って思い出させて"),
        T("{time}に「{todo}」ってリマインド", kind="free"), T("{todo}、{time}に教えて"), T("リマインド：{todo}、{time}", kind="free"),
        T("{time}に{todo}をリマインダーに入れて"),
    ],
    "translate": [
        T("「{phrase}」を{lang}で何と言いますか", kind="free"), T("{lang}で「{phrase}」って何て言う？", kind="free"),
        T("「{phrase}」の{lang}を教えて"), T("{lang}に訳して：{phrase}", kind="free"), T("「{phrase}」を{lang}にお願い", kind="free"),
        T("「{phrase}」を{lang}に翻訳", kind="free"), T("翻訳して、「{phrase}」を{lang}に", kind="free"),
    ],
    "read_notifications": [
        T("{app}の通知を{cnt}件教えて"), T("{app}に新着ある？", {"count": 5}, "free"), T("通知を読み上げて", {"count": 5}),
        T("最新の通知を一件読んで", {"count": 1}), T("通知を{cnt}つ読んで"), T("{app}の通知、最新{cnt}件", kind="free"),
    ],
}
for _k, _v in EXTRA_EN.items():
    EN[_k] = EN[_k] + _v
for _k, _v in EXTRA_JA.items():
    JA[_k] = JA[_k] + _v

# ----------------------------------------------------------------------------- out-of-domain
EN_OOD_TOPICS = ["the French Revolution", "black holes", "photosynthesis", "the stock market", "quantum computing",
                 "the Roman Empire", "climate change", "machine learning", "the human heart", "volcanoes",
                 "World War II", "the Renaissance", "cryptocurrency", "the immune system", "electric cars",
                 "the moon landing", "jazz history", "Japanese tea ceremony", "the Olympics", "dinosaurs",
                 "inflation", "the Internet", "DNA", "the Great Wall of China", "artificial intelligence",
                 "the theory of relativity", "Buddhism", "the solar system", "coffee farming", "sushi",
                 "the printing press", "earthquakes", "vaccines", "the Silk Road", "hybrid engines", "tides"]
JA_OOD_TOPICS = ["フランス革命", "ブラックホール", "光合成", "株式市場", "量子コンピュータ", "ローマ帝国", "気候変動",
                 "機械学習", "心臓の仕組み", "火山", "第二次世界大戦", "ルネサンス", "仮想通貨", "免疫", "電気自動車",
                 "月面着陸", "ジャズの歴史", "茶道", "オリンピック", "恐竜", "インフレ", "インターネット", "DNA",
                 "万里の長城", "人工知能", "相対性理論", "仏教", "太陽系", "コーヒー栽培", "寿司の歴史", "活版印刷",
                 "地震", "ワクチン", "シルクロード", "ハイブリッドエンジン", "潮の満ち引き"]
EN_OOD_T = [
    "explain {topic} to me", "tell me about {topic}", "what is {topic}?", "write an essay on {topic}",
    "summarize the history of {topic}", "give me three facts about {topic}", "why is {topic} important?",
    "write a poem about {topic}", "can you teach me {topic}?", "what do you think about {topic}?",
    "compare {topic} and {topic2}", "write a short story involving {topic}", "I have a question about {topic}",
    "what are the pros and cons of {topic}?", "make a quiz about {topic}",
]
EN_OOD_FIXED = [
    "what is {a} times {b}?", "what's {a} plus {b}?", "calculate {a} divided by {b}", "what is the square root of {a}?",
    "solve x + {a} = {b}", "is {a} a prime number?", "how many minutes are in {a} hours?",
    "tell me a joke", "how are you today?", "what's your name?", "who made you?", "good morning!", "thank you!",
    "write a haiku about autumn", "write a cover letter for a software job", "help me plan a birthday party",
    "what's the capital of Australia?", "who won the World Cup in 2018?", "how tall is Mount Fuji?",
    "recommend a good book", "what should I cook for dinner tonight?", "write a Python function to sort a list",
    "how do I fix a flat tire?", "what's the meaning of life?", "translate the whole Bible into Klingon and explain it",
    "what temperature does water boil at?", "who sang Bohemian Rhapsody?", "what year was Tokyo Station built?",
    "how does a seat heater work?", "why is the sky blue?", "what is the speed of light?", "can you keep a secret?",
    "I'm bored", "do you love me?", "what's the best phone to buy?", "how do I change my car's oil?",
    "write an email to my boss asking for a raise", "help me with my math homework", "explain how a timer works",
    "who is the prime minister of Japan?", "what's the difference between a cafe and a restaurant?",
    "give me a recipe for pancakes", "what is the population of Osaka?", "debug my JavaScript code",
    "plan a three day trip to Kyoto", "what is love?", "sing me a song", "how far is the moon?",
    "how many calories are in a banana?", "what rhymes with orange?", "who painted the Mona Lisa?",
    "what's the history of the Beatles?", "how do I say no politely?", "write a limerick about a cat",
    "is it healthy to drink coffee every day?", "what's a good name for a dog?", "explain the rules of chess",
    "convert 100 dollars to yen and explain exchange rates", "what's the weather like on Mars?",
    "how do airplanes fly?", "should I buy or lease a car?", "what happened in 1969?", "tell me a bedtime story",
]
JA_OOD_T = [
    "{topic}について教えて", "{topic}って何？", "{topic}を説明して", "{topic}についての作文を書いて",
    "{topic}の歴史を要約して", "{topic}について三つ教えて", "{topic}はなぜ重要なの？", "{topic}の詩を書いて",
    "{topic}を分かりやすく説明してください", "{topic}についてどう思う？", "{topic}と{topic2}を比較して",
    "{topic}に関するクイズを作って", "{topic}のメリットとデメリットは？", "{topic}について質問があります",
    "{topic}をテーマに物語を書いて",
]
JA_OOD_FIXED = [
    "{a}かける{b}は？", "{a}足す{b}はいくつ？", "{a}割る{b}を計算して", "{a}の平方根は？", "{a}は素数ですか？",
    "{a}時間は何分？", "面白い話をして", "元気？", "お名前は？", "誰が作ったの？", "おはよう！", "ありがとう！",
    "秋の俳句を作って", "履歴書の自己PRを書いて", "誕生日パーティーの計画を手伝って", "オーストラリアの首都は？",
    "2018年のワールドカップの優勝国は？", "富士山の高さは？", "おすすめの本を教えて", "今日の夕飯何にしよう？",
    "Pythonでリストを並べ替える関数を書いて", "パンクの直し方を教えて", "人生の意味って何？", "水は何度で沸騰する？",
    "ボヘミアン・ラプソディを歌ったのは誰？", "東京駅はいつ建てられたの？", "シートヒーターの仕組みは？", "空はなぜ青いの？",
    "光の速さは？", "暇だなあ", "私のこと好き？", "おすすめのスマホは？", "オイル交換のやり方を教えて",
    "上司に昇給をお願いするメールを書いて", "数学の宿題を手伝って", "日本の総理大臣は誰？", "パンケーキのレシピを教えて",
    "大阪の人口は？", "京都の三日間の旅行プランを立てて", "愛って何？", "歌を歌って", "月までの距離は？",
    "バナナのカロリーは？", "モナリザを描いたのは誰？", "ビートルズの歴史を教えて", "上手な断り方を教えて",
    "猫についての面白い詩を書いて", "毎日コーヒーを飲むのは体にいい？", "犬の名前を考えて", "将棋のルールを説明して",
    "百ドルは何円？為替の仕組みも説明して", "火星の天気はどんな感じ？", "飛行機はどうやって飛ぶの？",
    "車は買うのとリースとどっちがいい？", "寝る前のお話をして", "今日はいい天気ですね", "日本で一番高い山は？",
    "英語の勉強法を教えて", "相談に乗ってほしい", "最近疲れてるんだ",
]
EN_OOD_PRE = ["", "", "", "hey, ", "quick question: ", "ok, ", "so ", "I was wondering, "]
JA_OOD_PRE = ["", "", "", "ねえ、", "ちょっと質問、", "すみません、", "あのさ、"]

# ----------------------------------------------------------------------------- wrappers
EN_WRAP = ["{c}", "{c}", "{c}", "please {c}", "{c} please", "could you {c}?", "can you {c}?", "hey, {c}",
           "{c}, thanks", "I'd like you to {c}", "would you {c}?", "ok, {c}", "{c} now", "go ahead and {c}",
           "hey car, {c}", "{c}.", "{c}!", "um, {c}", "quickly {c}", "just {c}", "{c} for me", "mind if you {c}?",
           "do me a favor and {c}", "right, {c}", "{c}, would you?", "{c} right now", "hey assistant, {c}",
           "could you please {c}?", "{c} if you can", "I want you to {c}", "please {c}, thank you", "can you please {c}?",
           "okay so {c}", "{c} real quick", "hi, {c}"]
EN_FREE_WRAP = ["{c}", "{c}", "{c}", "hey, {c}", "{c}.", "ok {c}", "um, {c}", "so {c}", "{c}!", "well, {c}",
                "hmm, {c}", "okay, {c}", "hey there, {c}", "oh, {c}", "listen, {c}"]
JA_WRAP = ["{c}", "{c}", "{c}ください", "{c}くれる？", "{c}もらえますか？", "{c}ほしい", "ねえ、{c}", "{c}くれ",
           "すみません、{c}ください", "{c}ね", "ちょっと{c}", "{c}くれない？", "{c}いただけますか", "{c}。",
           "えっと、{c}", "{c}くださいね", "悪いけど{c}", "{c}もらえる？", "お願い、{c}", "{c}よ", "{c}ちょうだい",
           "すぐ{c}", "{c}くれますか", "あ、{c}", "{c}くださいませ"]
JA_FREE_WRAP = ["{c}", "{c}", "{c}", "ねえ、{c}", "{c}。", "えっと、{c}", "あの、{c}", "{c}！", "うーん、{c}", "ちょっと、{c}",
                "あ、{c}", "{c}。お願い", "すみません、{c}"]
# wrappers held out for the test split (index % 5 == 4)


def wrap_pool(pool, split):
    if split == "train":
        return [w for i, w in enumerate(pool) if i % 5 != 4]
    return pool


SYSTEMS = {
    "en": {"cockpit": ["You are the in-car assistant.", "You are the voice assistant of this car.",
                       "In-car assistant. Answer with a tool call or a fallback."],
           "glasses": ["You are the assistant on smart glasses.", "You are a smart glasses voice assistant.",
                       "Smart glasses assistant. Answer with a tool call or a fallback."]},
    "ja": {"cockpit": ["あなたは車載アシスタントです。", "あなたはこの車の音声アシスタントです。"],
           "glasses": ["あなたはスマートグラスのアシスタントです。", "スマートグラスの音声アシスタントです。"]},
}

JA_MODE_WORD = {"eco": ["エコ", "ECO"], "comfort": ["コンフォート", "快適"], "sport": ["スポーツ", "スポーツ"]}
JA_STATE = {"on": ["つけて", "オンにして", "点けて"], "off": ["消して", "オフにして"], "auto": ["オートにして", "自動にして"]}
JA_STATE_FREE = {"on": ["オン"], "off": ["オフ"], "auto": ["オート", "自動"]}


def load_tools():
    with open(os.path.join(MODEL_DIR, "tools.json"), encoding="utf-8") as f:
        cat = json.load(f)
    return {t["function"]["name"]: t for t in cat["tools"]}


def ordered_args(tool, args):
    props = tool["function"]["parameters"]["properties"]
    out = {}
    for k in props:
        if k in args:
            out[k] = args[k]
    assert set(args) <= set(props), (tool["function"]["name"], args)
    return out


def validate(tool, args):
    p = tool["function"]["parameters"]
    for r in p["required"]:
        assert r in args, (tool["function"]["name"], args)
    for k, v in args.items():
        s = p["properties"][k]
        if "enum" in s:
            assert v in s["enum"], (k, v)
        if s["type"] == "integer":
            assert isinstance(v, int) and not isinstance(v, bool), (k, v)
        if s["type"] == "number":
            assert isinstance(v, (int, float)), (k, v)
            assert abs(v * 2 - round(v * 2)) < 1e-9
        if s["type"] in ("integer", "number"):
            assert s.get("minimum", -1e9) <= v <= s.get("maximum", 1e9), (k, v)
        if "pattern" in s:
            assert re.match(s["pattern"], v), (k, v)
        if s["type"] == "string":
            assert isinstance(v, str) and v.strip() == v and v, (k, v)


def split_templates(tpls, split):
    if split == "train":
        return [t for i, t in enumerate(tpls) if i % 4 != 3]
    return [t for i, t in enumerate(tpls) if i % 4 == 3]


def fill(ctx, tool, pattern, fixed):
    """Fill a template; returns (text, args)."""
    r = ctx.rng
    en = ctx.lang == "en"
    args = dict(fixed)
    out = pattern

    def sub(slot, surface):
        nonlocal out
        out = out.replace("{" + slot + "}", surface, 1)

    if "{zone}" in out:
        z = args.get("zone") or r.choice(["driver", "passenger", "rear", "all"])
        args["zone"] = z
        sub("zone", r.choice((ZONES_EN if en else ZONES_JA)[z]))
    if "{temp}" in out:
        v = celsius_value(ctx)
        args["celsius"] = fmt_celsius(v)
        sub("temp", celsius_surface(ctx, v))
    if tool == "set_temperature" and "zone" not in args:
        args["zone"] = "all"
    if "{seat}" in out:
        s = args.get("seat") or r.choice(["driver", "passenger"])
        args["seat"] = s
        sub("seat", r.choice((SEATS_EN if en else SEATS_JA)[s]))
    if "{window}" in out:
        w = args.get("window") or r.choice(list(WIN_EN))
        args["window"] = w
        sub("window", r.choice((WIN_EN if en else WIN_JA)[w]))
    if "{lvl}" in out:
        hi = {"set_fan_speed": 7, "set_seat_heater": 3}[tool]
        v = r.randint(0, hi) if tool == "set_fan_speed" else r.randint(0, hi)
        args["level"] = v
        if en:
            sub("lvl", ctx.n(v, 0.35))
        else:
            sub("lvl", ctx.n(v, 0.3) if r.random() < 0.85 else ["ゼロ", "一", "二", "三", "四", "五", "六", "七"][v])
    if "{pct}" in out:
        v = r.choice([ctx.num(0, 100, "percent"), r.randrange(0, 101, 10), r.randrange(0, 101, 5)])
        if ctx.split == "train" and v in HELD_NUM["percent"]:
            v = 50
        key = {"set_window": "percent", "set_volume": "level", "set_display_brightness": "percent"}[tool]
        args[key] = v
        if en:
            sub("pct", r.choice([f"{ctx.n(v)} percent", f"{v}%", f"{ctx.n(v)}", f"{v} percent"]))
        else:
            sub("pct", r.choice([f"{ctx.n(v)}パーセント", f"{v}%", f"{v}％", f"{ctx.n(v)}", f"{ctx.n(v)}%"]))
    if "{mode}" in out:
        if tool == "set_drive_mode":
            m = r.choice(["eco", "comfort", "sport"])
            args["mode"] = m
            sub("mode", m if en else r.choice(JA_MODE_WORD[m]))
    if "{state}" in out:
        s = args.get("state") or r.choice(["on", "off", "auto"])
        args["state"] = s
        if en:
            sub("state", {"on": "on", "off": "off", "auto": r.choice(["auto", "to auto"])}[s] if "set lights" not in out else s)
        else:
            freeform = out.endswith("{state}") and "、" in out
            sub("state", r.choice((JA_STATE_FREE if freeform else JA_STATE)[s]))
    if "{cat}" in out:
        c = r.choice(list(CAT_EN))
        args["category"] = c
        sub("cat", r.choice((CAT_EN if en else CAT_JA)[c]))
    if "{place}" in out:
        p = V.value(r, ctx.split, "place", ctx.lang)
        if tool == "navigate_to":
            args["destination"] = p
        else:
            args["location"] = p
        sub("place", p)
    if tool == "navigate_to" and "mode" not in args:
        args["mode"] = "drive"  # may be overridden by a glasses system message
        args["_mode_default"] = True
    if "{media}" in out:
        kind = r.choice(list(EN_MEDIA))
        q = V.media_value(r, ctx.split, kind, ctx.lang)
        form = r.choice((KIND_EN if en else KIND_JA)[kind])
        args["query"] = q
        args["kind"] = kind
        sub("media", form.replace("{q}", q))
    if "{name}" in out:
        nm = V.value(r, ctx.split, "name", ctx.lang)
        args["contact" if tool == "send_message" else "name"] = nm
        sub("name", nm if en else nm + (r.choice(JA_HON) if nm not in V.HONORIFIC_FREE else ""))
    if "{text}" in out:
        t = V.value(r, ctx.split, "msg", ctx.lang)
        args["text"] = t
        sub("text", t)
    if "{day}" in out:
        d = r.choice(["today", "tomorrow"])
        args["day"] = d
        if en:
            sub("day", d if r.random() < 0.8 else {"today": r.choice(["for today", "right now", "this afternoon"]), "tomorrow": r.choice(["for tomorrow", "tomorrow morning"])}[d])
        else:
            sub("day", {"today": r.choice(["今日", "今日", "本日", "きょう"]), "tomorrow": r.choice(["明日", "明日", "あした", "明日"])}[d])
    if tool == "get_weather" and "day" not in args:
        args["day"] = "today"
    if "{min}" in out:
        m = minutes_value(ctx)
        args["minutes"] = m
        sub("min", minutes_surface(ctx, m))
    if "{todo}" in out:
        t = V.value(r, ctx.split, "todo", ctx.lang)
        args["text"] = t
        sub("todo", t)
    if "{time}" in out:
        h, m = time_value(ctx)
        args["time"] = f"{h:02d}:{m:02d}"
        sub("time", time_surface(ctx, h, m))
    if "{phrase}" in out:
        # mostly phrases in the other language, sometimes same
        plang = "ja" if (en and r.random() < 0.3) or (not en and r.random() < 0.55) else "en"
        ph = V.value(r, ctx.split, "phrase", plang)
        args["text"] = ph
        sub("phrase", ph)
        lg = r.choice(list(LANG_EN))
        args["target_language"] = lg
        sub("lang", r.choice((LANG_EN if en else LANG_JA)[lg]))
    if "{sec}" in out:
        s = r.choice([r.randint(1, 60), r.choice([5, 10, 15, 20, 30, 60])])
        args["seconds"] = s
        if en:
            sub("sec", r.choice([f"{ctx.n(s)} second", f"{ctx.n(s)}-second", f"{s} sec"]) if "{sec} video" in pattern or "{sec} clip" in pattern
                else r.choice([f"{ctx.n(s)} seconds", f"{s} seconds", f"{s} secs"] if s != 1 else ["one second", "1 second"]))
        else:
            sub("sec", r.choice([f"{ctx.n(s)}秒", f"{s}秒間", f"{ctx.n(s)}秒間"]) + ("の" if "{sec}動画" in pattern else ""))
    if "{cnt}" in out:
        c = r.randint(1, 10)
        args["count"] = c
        if en:
            sub("cnt", ctx.n(c, 0.4))
        else:
            sub("cnt", ctx.n(c, 0.3))
    if "{app}" in out:
        a = V.value(r, ctx.split, "app", ctx.lang)
        args["app"] = a
        sub("app", a)
    assert "{" not in out, (tool, pattern, out)
    return out, args


def cap(r, s, lang, allow_upper=True):
    if lang != "en":
        return s
    x = r.random()
    if x < 0.6:
        return s[:1].upper() + s[1:]
    if x < 0.95 or not allow_upper:
        return s
    return s.upper() if len(s) < 30 else s


ENUM_KEYS = {"zone", "seat", "window", "mode", "state", "category", "kind", "action", "day", "target_language", "time"}


GRAMMAR_P = 0.5  # share of training requests drawn from grammar.py's composed phrasings


def _grammar_pool(lang):
    """grammar.py's frames per tool, minus any pattern that is a held-out (test) template."""
    src, g = (EN, G.EN_G) if lang == "en" else (JA, G.JA_G)
    out = {}
    for tool, frames in g.items():
        held = {p for p, _, _ in split_templates(src[tool], "test")}
        out[tool] = [t for t in frames if t[0] not in held]
    return out


GRAMMAR = {"en": _grammar_pool("en"), "ja": _grammar_pool("ja")}
# How a training request picks its composed phrasing: "expansion" (every expansion equally likely, so a frame
# with many alternatives is drawn more often) or "frame" (first a frame,
# then one of its expansions: a short indirect wish such as "my seat is cold" is drawn as often as a long direct
# command; the committed corpus).
SAMPLE_BY = "frame"


def _by_frame(pool):
    frames = {}
    for t in pool:
        frames.setdefault(t[3], []).append(t)
    return list(frames.values())


GRAMMAR_FRAMES = {lang: {tool: _by_frame(p) for tool, p in g.items()} for lang, g in GRAMMAR.items()}


def set_sample_by(how):
    global SAMPLE_BY
    SAMPLE_BY = how


def _grams(text, lang):
    """Word 4-grams (English) or 6-character runs (Japanese) of a request or template, slots removed."""
    t = re.sub(r"\{[a-z_0-9]+\}", " ", text.lower())
    words = re.sub(r"[^\w\u3040-\u30ff\u4e00-\u9fff]+", " ", t).split()
    if lang == "ja":
        words, n = list("".join(words)), 6
    else:
        n = 4
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _held_grams(lang):
    """What LEAK_GUARD keeps out of newly written training phrasings: every held-out (test) template,
    tool or out-of-domain, and the hand-written evaluation requests."""
    from hand import HAND, HAND2, HAND3
    src = EN if lang == "en" else JA
    texts = [p for tool in src for p, _, _ in split_templates(src[tool], "test")]
    texts += split_templates(EN_OOD_T if lang == "en" else JA_OOD_T, "test")
    texts += split_templates(EN_OOD_FIXED if lang == "en" else JA_OOD_FIXED, "test")
    texts += [t for lg, t, _ in HAND + HAND2 + HAND3 if lg == lang]
    out = set()
    for t in texts:
        out |= _grams(t, lang)
    return out, {t.lower() for t in texts}


def leak_guard(patterns, lang):
    """The patterns that share no 4-gram (6-character run) with, and are not equal to, a held-out template
    or a hand-written request."""
    grams, whole = _held_grams(lang)
    return [p for p in patterns if not (_grams(p, lang) & grams) and p.lower() not in whole]


OOD_G = {"en": G.EN_OOD_G + leak_guard(G.EN_OOD_G2, "en"), "ja": G.JA_OOD_G + leak_guard(G.JA_OOD_G2, "ja")}

# Surface noise on training requests: fillers, a lower-cased or unpunctuated request,
# a typo or a repeated word, never inside a value the answer copies.
AUG_P = 0.3
EN_FILLERS = ["uh", "um", "like", "please", "actually", "just", "okay", "so", "now", "maybe", "kindly", "quickly",
              "you know", "er", "right", "hmm"]
JA_FILLERS = ["えーと、", "あの、", "ちょっと", "なんか", "まあ", "とりあえず", "えー、", "うん、", "じゃあ"]


def _spans(text, values):
    out = []
    for v in values:
        i = text.find(v)
        if i >= 0:
            out.append((i, i + len(v)))
    return out


def _outside(i, spans):
    return all(not (a <= i < b) for a, b in spans)


def augment(ctx, text, args):
    """Training only: maybe one surface change of the request; copied string values stay substrings."""
    r = ctx.rng
    if ctx.split != "train" or r.random() >= AUG_P:
        return text, args
    copied = {k: v for k, v in args.items() if isinstance(v, str) and k not in ENUM_KEYS}
    spans = _spans(text, copied.values())
    op = r.random()
    if ctx.lang == "en":
        if op < 0.35:  # a filler at a word boundary outside the values
            cuts = [0] + [i + 1 for i, c in enumerate(text) if c == " " and _outside(i, spans) and _outside(i + 1, spans)]
            i = r.choice(cuts)
            f = r.choice(EN_FILLERS)
            return (text[:i] + f + (", " if i == 0 and r.random() < 0.5 else " ") + text[i:]), args
        if op < 0.55:  # dictated: all lower case, values too
            return text.lower(), {k: (v.lower() if k in copied else v) for k, v in args.items()}
        if op < 0.75:  # no punctuation outside the values
            t = "".join(c for i, c in enumerate(text) if c not in ",.!?" or not _outside(i, spans))
            return re.sub(r" {2,}", " ", t).strip(), args
        words = [(m.start(), m.end()) for m in re.finditer(r"[A-Za-z]+", text)
                 if _outside(m.start(), spans) and _outside(m.end() - 1, spans)]
        if not words:
            return text, args
        a, b = r.choice(words)
        w = text[a:b]
        if op < 0.88 and len(w) >= 4:  # a typo: two inner letters swapped
            j = r.randrange(1, len(w) - 2)
            w2 = w[:j] + w[j + 1] + w[j] + w[j + 2:]
            return text[:a] + w2 + text[b:], args
        return text[:b] + " " + w.lower() + text[b:], args  # a repeated word
    if op < 0.5:  # a filler at the start or after a comma outside the values
        cuts = [0] + [i + 1 for i, c in enumerate(text) if c == "、" and _outside(i, spans)]
        i = r.choice(cuts)
        return text[:i] + r.choice(JA_FILLERS) + text[i:], args
    t = "".join(c for i, c in enumerate(text) if c not in "、。！？!?" or not _outside(i, spans))
    return (t if t else text), args


def system_prompt(ctx, scenario):
    if ctx.split == "train" and ctx.rng.random() < GRAMMAR_P:
        return ctx.rng.choice(G.SYSTEMS_G[ctx.lang][scenario])
    return ctx.rng.choice(SYSTEMS[ctx.lang][scenario])


def gen_tool_example(ctx, tools, tool):
    r = ctx.rng
    tpls = split_templates((EN if ctx.lang == "en" else JA)[tool], ctx.split)
    if ctx.split == "train" and r.random() < GRAMMAR_P:
        if SAMPLE_BY == "frame":
            tpls = r.choice(GRAMMAR_FRAMES[ctx.lang][tool])
        else:
            tpls = GRAMMAR[ctx.lang][tool]
    pattern, fixed, kind = r.choice(tpls)[:3]
    core, args = fill(ctx, tool, pattern, fixed)
    if ctx.lang == "en":
        wraps = wrap_pool(EN_WRAP if kind == "cmd" else EN_FREE_WRAP, ctx.split)
        text = r.choice(wraps).replace("{c}", core)
        if text.endswith("?.") or text.endswith("??"):
            text = text[:-1]
        # shouting would change copied values (names, places, texts): only for enum/number requests
        copied = any(isinstance(v, str) and k not in ENUM_KEYS for k, v in args.items())
        text = cap(r, text, "en", allow_upper=not copied)
        text, args = augment(ctx, text, args)
    else:
        if kind == "cmd" and core.endswith("て"):
            wraps = wrap_pool(JA_WRAP, ctx.split)
        else:
            wraps = wrap_pool(JA_FREE_WRAP, ctx.split)
        text = r.choice(wraps).replace("{c}", core)
        text, args = augment(ctx, text, args)
    scen_opts = tools[tool]["x-scenarios"]
    scenario = r.choice(scen_opts)
    messages = []
    if r.random() < 0.2:
        messages.append({"role": "system", "content": system_prompt(ctx, scenario)})
    if args.pop("_mode_default", False) and messages and scenario == "glasses":
        args["mode"] = "walk"
    messages.append({"role": "user", "content": text})
    validate(tools[tool], args)
    return {"messages": messages, "expected": {"name": tool, "arguments": ordered_args(tools[tool], args)},
            "lang": ctx.lang, "scenario": scenario}


def gen_ood_example(ctx):
    r = ctx.rng
    en = ctx.lang == "en"
    topics = split_pool(EN_OOD_TOPICS if en else JA_OOD_TOPICS, ctx.split)
    if ctx.split == "train" and r.random() < GRAMMAR_P:
        topics = topics + (G.EN_OOD_TOPICS_G if en else G.JA_OOD_TOPICS_G)
        a, b = r.sample(topics, 2)
        t = r.choice(OOD_G["en" if en else "ja"])
        text = t.replace("{topic}", a).replace("{topic2}", b)
        text = text.replace("{a}", str(r.randint(2, 999))).replace("{b}", str(r.randint(2, 99)))
    elif r.random() < 0.45:
        t = r.choice(split_templates(EN_OOD_T if en else JA_OOD_T, ctx.split))
        a, b = r.sample(topics, 2)
        text = t.replace("{topic}", a).replace("{topic2}", b)
    else:
        t = r.choice(split_templates(EN_OOD_FIXED if en else JA_OOD_FIXED, ctx.split))
        text = t.replace("{a}", str(r.randint(2, 999))).replace("{b}", str(r.randint(2, 99)))
    text = r.choice(EN_OOD_PRE if en else JA_OOD_PRE) + text
    if en:
        text = cap(r, text, "en")
    text, _ = augment(ctx, text, {})
    messages = []
    scenario = "ood"
    if r.random() < 0.2:
        messages.append({"role": "system", "content": system_prompt(ctx, r.choice(["cockpit", "glasses"]))})
    messages.append({"role": "user", "content": text})
    return {"messages": messages, "expected": None, "lang": ctx.lang, "scenario": scenario}


COPY_TOOLS = {"call_contact", "send_message", "navigate_to", "play_media", "get_weather", "set_reminder", "translate",
              "read_notifications"}
COPY_WEIGHT = 1.6


def set_copy_weight(w):
    global COPY_WEIGHT
    COPY_WEIGHT = w


def generate(split, n, seed, tools, exclude=None):
    rng = random.Random(seed)
    names = list(tools)
    out, seen = [], set()
    tries = 0
    while len(out) < n and tries < n * 20:
        tries += 1
        lang = "en" if rng.random() < 0.5 else "ja"
        ctx = Ctx(rng, lang, split)
        if rng.random() < 0.2:
            ex = gen_ood_example(ctx)
        else:
            if split == "train":  # tools whose arguments are copied from the request need more examples
                tool = rng.choices(names, weights=[COPY_WEIGHT if t in COPY_TOOLS else 1.0 for t in names])[0]
            else:
                tool = rng.choice(names)
            ex = gen_tool_example(ctx, tools, tool)
        key = json.dumps(ex["messages"], ensure_ascii=False)
        if key in seen or (exclude is not None and ex["messages"][-1]["content"] in exclude):
            continue
        if split == "train" or True:
            seen.add(key)
        out.append(ex)
    return out


def target_text(expected):
    if expected is None:
        return "<|fallback|><|im_end|>"
    return "<tool_call>" + json.dumps({"name": expected["name"], "arguments": expected["arguments"]}, ensure_ascii=False) + "</tool_call><|im_end|>"


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-valid", type=int, default=600)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(MODEL_DIR, "data"))
    ap.add_argument("--copy-weight", type=float, default=COPY_WEIGHT,
                    help="how much more often a training request is for a tool whose arguments are copied (COPY_TOOLS)")
    ap.add_argument("--sample-by", choices=["expansion", "frame"], default=SAMPLE_BY,
                    help="how training requests pick a composed phrasing (see SAMPLE_BY)")
    args = ap.parse_args()
    set_sample_by(args.sample_by)
    set_copy_weight(args.copy_weight)
    tools = load_tools()
    os.makedirs(args.out, exist_ok=True)
    train = generate("train", args.n_train, args.seed, tools)
    train_texts = {ex["messages"][-1]["content"] for ex in train}
    test = generate("test", args.n_test, args.seed + 1, tools, exclude=train_texts)
    valid = generate("test", args.n_valid, args.seed + 2, tools, exclude=train_texts)
    calib = random.Random(args.seed + 3).sample(train, 200)
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "valid.jsonl"), valid)
    write_jsonl(os.path.join(args.out, "test.jsonl"), test)
    write_jsonl(os.path.join(args.out, "calib.jsonl"), calib)
    print(f"train {len(train)} valid {len(valid)} test {len(test)} calib {len(calib)}")


if __name__ == "__main__":
    main()
