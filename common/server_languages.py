"""PostgreSQL's refusals of a connection in the languages its server speaks (`lc_messages`), each
beside its English message, so that error_words reads a German or a Japanese server's refusal
as it reads an English one.

A session's errors carry their SQLSTATE, which error_words reads first; a refused connection's
do not (libpq keeps only the text: `connection to server at "db", port 5432 failed: FATAL:  zu
viele Verbindungen von Rolle »app«`). Before (says hunt), such a refusal was said in the
server's own words only, and taken for an outage: a German server's role at its CONNECTION
LIMIT was "the database cannot be reached now" in the API, "importbeat's database is
unreachable" in the worker's hand-back, where an English one is "no free connection".

Taken from PostgreSQL 15's message catalogues (Debian's postgresql-15,
/usr/share/locale/<language>/LC_MESSAGES/postgres-15.mo), whitespace runs made one space;
tests/test_a_servers_refusals_in_every_language_it_speaks_are_classified.py checks the table
against every catalogue of this machine. Only the refusals error_words has words for.
"""

# ruff: noqa: E501 (a server's sentences, as its catalogue has them)

from __future__ import annotations

# English message (`%s` a name) -> its translations, by language (a language whose catalogue
# leaves one untranslated says it in English).
REFUSALS: dict[str, dict[str, str]] = {
    'too many connections for role "%s"': {
        "de": "zu viele Verbindungen von Rolle »%s«",
        "es": "demasiadas conexiones para el rol «%s»",
        "fr": "trop de connexions pour le rôle « %s »",
        "it": 'troppe connessioni per il ruolo "%s"',
        "ja": 'ロール"%s"からの接続が多すぎます',
        "ka": 'მეტისმეტად ბევრი კავშირი როლისთვის "%s"',
        "ko": '"%s" 롤의 최대 동시 접속수를 초과했습니다',
        "ru": 'слишком много подключений для роли "%s"',
        "sv": 'för många uppkopplingar för roll "%s"',
        "uk": 'занадто багато підключень для ролі "%s"',
        "zh_CN": '角色 "%s" 的连接过多',
        "zh_TW": '角色 "%s" 的連線太多',
    },
    'too many connections for database "%s"': {
        "de": "zu viele Verbindungen für Datenbank »%s«",
        "es": "demasiadas conexiones para la base de datos «%s»",
        "fr": "trop de connexions pour la base de données « %s »",
        "it": 'troppe connessioni al database "%s"',
        "ja": 'データベース"%s"への接続が多すぎます',
        "ka": 'ძალიან ბევრი კავშირი ბაზისთვის "%s"',
        "ko": '"%s" 데이터베이스 최대 접속수를 초과했습니다',
        "ru": 'слишком много подключений к БД "%s"',
        "sv": 'för många uppkopplingar till databasen "%s"',
        "uk": 'занадто багато підключень до бази даних "%s"',
        "zh_CN": '数据库 "%s" 的连接过多',
        "zh_TW": '資料庫 "%s" 的連線太多',
    },
    "sorry, too many clients already": {
        "de": "tut mir leid, schon zu viele Verbindungen",
        "es": "lo siento, ya tenemos demasiados clientes",
        "fr": "désolé, trop de clients sont déjà connectés",
        "it": "spiacente, troppi client già connessi",
        "ja": "現在クライアント数が多すぎます",
        "ka": "უკაცრავად, უკვე მეტისმეტად ბევრი კლიენტია",
        "ko": "최대 동시 접속자 수를 초과했습니다.",
        "ru": "извините, уже слишком много клиентов",
        "sv": "ledsen, för många klienter",
        "uk": "вибачте, вже забагато клієнтів",
        "zh_CN": "客户端连接过多",
        "zh_TW": "抱歉，客戶端過多",
    },
    "remaining connection slots are reserved for non-replication superuser connections": {
        "de": "die verbleibenden Verbindungen sind für Superuser auf Nicht-Replikationsverbindungen reserviert",
        "es": "las conexiones restantes están reservadas a superusuarios y no de replicación",
        "fr": "les emplacements de connexions restants sont réservés pour les connexions superutilisateur non relatif à la réplication",
        "it": "i rimanenti slot di connessione sono riservati a connessioni di superutenti non di replica",
        "ja": "残りの接続スロットはレプリケーションユーザーではないスーパーユーザー用に予約されています",
        "ko": "남은 연결 슬롯은 non-replication 슈퍼유저 연결용으로 남겨 놓았음",
        "ru": "оставшиеся слоты подключений зарезервированы для подключений суперпользователя (не для репликации)",
        "sv": "resterande anslutningsslottar är reserverade för superuser-anslutningar utan replikering",
        "uk": "слоти підключень, які залишились, зарезервовані для підключень суперкористувача (не для реплікації)",
        "zh_CN": "剩余连接槽位保留给超级用户的非复制连接",
        "zh_TW": "剩餘的連線槽保留給非複寫的超級使用者連線",
    },
    "the database system is starting up": {
        "de": "das Datenbanksystem startet",
        "es": "el sistema de base de datos está iniciándose",
        "fr": "le système de bases de données se lance",
        "it": "il database si sta avviando",
        "ja": "データベースシステムは起動処理中です",
        "ka": "მიმდინარეობს მონაცემთა ბაზის სისტემის გაშვება",
        "ko": "데이터베이스 시스템이 새로 가동 중입니다.",
        "ru": "система баз данных запускается",
        "sv": "databassystemet startar upp",
        "uk": "система бази даних запускається",
        "zh_CN": "数据库系统正在启动",
        "zh_TW": "資料庫系統正在啟動",
    },
    "the database system is shutting down": {
        "de": "das Datenbanksystem fährt herunter",
        "es": "el sistema de base de datos está apagándose",
        "fr": "le système de base de données s'arrête",
        "it": "il database si sta spegnendo",
        "ja": "データベースシステムはシャットダウンしています",
        "ka": "მონაცემთა ბაზის სისტემა ითიშება",
        "ko": "데이터베이스 시스템이 중지 중입니다",
        "ru": "система баз данных останавливается",
        "sv": "databassystemet stänger ner",
        "uk": "система бази даних завершує роботу",
        "zh_CN": "数据库系统正在关闭",
        "zh_TW": "資料庫系統正在關閉",
    },
    'database "%s" does not exist': {
        "de": "Datenbank »%s« existiert nicht",
        "es": "no existe la base de datos «%s»",
        "fr": "la base de données « %s » n'existe pas",
        "it": 'il database "%s" non esiste',
        "ja": 'データベース"%s"は存在しません',
        "ka": 'მონაცემთა ბაზა "%s" არ არსებობს',
        "ko": '"%s" 데이터베이스 없음',
        "ru": 'база данных "%s" не существует',
        "sv": 'databasen "%s" existerar inte',
        "uk": 'бази даних "%s" не існує',
        "zh_CN": '数据库 "%s" 不存在',
        "zh_TW": '資料庫 "%s" 不存在',
    },
    'role "%s" does not exist': {
        "de": "Rolle »%s« existiert nicht",
        "es": "no existe el rol «%s»",
        "fr": "le rôle « %s » n'existe pas",
        "it": 'il ruolo "%s" non esiste',
        "ja": 'ロール"%s"は存在しません',
        "ka": 'როლი არ არსებობს: "%s"',
        "ko": '"%s" 롤(role) 없음',
        "ru": 'роль "%s" не существует',
        "sv": 'rollen "%s" finns inte',
        "uk": 'роль "%s" не існує',
        "zh_CN": '角色 "%s" 不存在',
        "zh_TW": '角色 "%s" 不存在',
    },
    'password authentication failed for user "%s"': {
        "de": "Passwort-Authentifizierung für Benutzer »%s« fehlgeschlagen",
        "es": "la autentificación password falló para el usuario «%s»",
        "fr": "authentification par mot de passe échouée pour l'utilisateur « %s »",
        "it": 'autenticazione con password fallita per l\'utente "%s"',
        "ja": 'ユーザー"%s"のパスワード認証に失敗しました',
        "ka": 'პაროლით ავთენტიფიკაცია მომხმარებლისთვის "%s" ვერ მოხერხდა',
        "ko": '사용자 "%s"의 password 인증을 실패했습니다',
        "ru": 'пользователь "%s" не прошёл проверку подлинности (по паролю)',
        "sv": 'Lösenordsautentisering misslyckades för användare "%s"',
        "uk": 'користувач "%s" не пройшов автентифікацію за допомогою пароля',
        "zh_CN": '用户 "%s" 的密码认证失败',
        "zh_TW": '密碼驗證使用者 "%s" 失敗',
    },
    'database "%s" is not currently accepting connections': {
        "de": "Datenbank »%s« akzeptiert gegenwärtig keine Verbindungen",
        "es": "la base de datos «%s» no acepta conexiones",
        "fr": "la base de données « %s » n'accepte plus les connexions",
        "it": 'il database "%s" attualmente non accetta connessioni',
        "ja": '現在データベース"%s"は接続を受け付けません',
        "ka": 'ბაზა "%s" ამჟამად მიერთებებს არ იღებს',
        "ko": '"%s" 데이터베이스는 현재 접속을 허용하지 않습니다',
        "ru": 'база "%s" не принимает подключения в данный момент',
        "sv": 'databasen "%s" tar för närvarande inte emot uppkopplingar',
        "uk": 'база даних "%s" не приймає підключення в даний момент',
        "zh_CN": '数据库 "%s" 当前不接受连接',
        "zh_TW": '資料庫 "%s" 目前並不接受連線',
    },
}
