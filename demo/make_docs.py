"""Generate the demo documents in demo/docs/ (run once; the outputs are committed).

    pip install reportlab          # generation only; `make demo` does not need it
    python demo/make_docs.py       # writes demo/docs/*.pdf, checks their text with pypdf

All content is original and fictional (Nordhaven Appliances and 云杉数据科技 do not exist).
The Chinese PDF uses reportlab's built-in CID font STSong-Light: pypdf maps it back to
Unicode exactly (checked at the end). Output is byte-for-byte reproducible (``invariant``).
"""
from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent / "docs"

EN_TITLE = "Nordhaven HV-320 Cordless Vacuum - Owner's Manual"
EN_PAGES = [
    ("1. About your HV-320", [
        "Thank you for choosing the Nordhaven HV-320 cordless stick vacuum. This manual covers safe use, "
        "charging, maintenance, troubleshooting, the warranty and our return policy. Keep it with your "
        "proof of purchase: you will need both for any warranty claim.",
        "<b>Technical specifications.</b> Battery: 25.2 V lithium-ion, 2,500 mAh, removable. Run time: up "
        "to 45 minutes in Eco mode, 25 minutes in Standard mode and 12 minutes in Boost mode. Full charge: "
        "4.5 hours with the supplied 30 W charger (model NC-30). Dust bin capacity: 0.6 litres. Weight: "
        "2.4 kg with the floor head fitted. Noise: 74 dB(A) in Standard mode.",
        "<b>In the box.</b> Main unit with battery, motorised floor head with soft roller, 2-in-1 crevice "
        "and brush tool, wall dock with two screws, NC-30 charger, spare HEPA filter and this manual.",
        "<b>Important safety instructions.</b> Use the vacuum indoors only and only on dry surfaces. Never "
        "pick up water, ash, embers, toner or broken glass. Charge the battery only with the NC-30 charger, "
        "at a room temperature between 5 and 35 degrees Celsius, and never leave it charging in direct "
        "sunlight. Do not use the vacuum if the cable or the charger is damaged. Keep hair, loose clothing "
        "and fingers away from the rotating brush roll. Children older than 12 may use the appliance "
        "under supervision; it is not a toy.",
        "If the battery swells, smells of burning or becomes hotter than 60 degrees Celsius, stop using it, "
        "move it to a non-flammable surface outdoors and contact Nordhaven support. Do not open, crush or "
        "puncture the battery, and recycle it at a collection point for lithium batteries.",
    ]),
    ("2. Charging, maintenance and troubleshooting", [
        "<b>Charging.</b> The three white lights on the handle show the charge level: three lights mean more "
        "than 70 percent, one light means less than 30 percent. A flashing light means the battery is "
        "charging. For a long battery life, store the vacuum at 40 to 60 percent charge when you will not "
        "use it for more than 30 days, and recharge it every three months.",
        "<b>Maintenance schedule.</b> Regular care keeps suction strong and is a condition of the warranty.",
        "__TABLE__",
        "Wash the pre-filter by hand in cold water only, without detergent, and let it dry for at least "
        "24 hours before refitting it. A damp filter can damage the motor. The HEPA filter must not be "
        "washed: replace it with a genuine part (order code HF-320, sold in packs of two).",
        "<b>Troubleshooting.</b> Red light flashing three times: the airflow is blocked; empty the bin and "
        "check the wand and floor head for blockages. Red light steady: the battery is too hot or too cold; "
        "let it reach room temperature. Brush roll stops: remove wrapped hair and restart. Vacuum pulses: "
        "the filters are clogged; clean or replace them as in the schedule above.",
    ]),
    ("3. Warranty and returns", [
        "<b>Limited warranty.</b> Nordhaven guarantees the HV-320 against defects in materials and "
        "workmanship for 2 years from the date of purchase. The battery is covered for 12 months or 300 "
        "full charge cycles, whichever comes first. The digital motor is covered for 5 years if you "
        "register the product at nordhaven.example/register within 28 days of purchase.",
        "The warranty does not cover filters, brush rolls and other wear parts, damage caused by "
        "liquids, use with a charger other than the NC-30, commercial use, or repairs made by anyone other "
        "than a Nordhaven service centre. Repairs under warranty are free of charge, including parts, "
        "labour and return shipping.",
        "<b>How to make a claim.</b> Find the serial number on the label under the dust bin (it starts "
        "with HV3). Contact support at support@nordhaven.example or call 0800 555 0132, Monday to Friday, "
        "8:00 to 18:00. Have your proof of purchase ready. We aim to repair or replace a faulty vacuum "
        "within 10 working days of receiving it.",
        "<b>Returns.</b> You may return an unused HV-320 in its original, unopened packaging within 30 days "
        "of delivery for a full refund. An opened product that is not faulty can be returned within the "
        "same 30 days, but a restocking fee of 15 percent of the purchase price is deducted from the "
        "refund. A product that is faulty on arrival is replaced free of charge, and we pay the return "
        "shipping. Refunds are paid to the original payment method within 14 days after we receive the "
        "returned product.",
    ]),
]
EN_SCHEDULE = [
    ["Task", "How often"],
    ["Empty the dust bin", "After every use"],
    ["Wash the pre-filter", "Every 2 weeks"],
    ["Remove hair from the brush roll", "Once a month"],
    ["Replace the HEPA filter", "Every 12 months"],
    ["Check the charger cable for damage", "Every 3 months"],
]

ZH_TITLE = "云杉数据科技有限公司 员工手册（2024年版）"
ZH_PAGES = [
    ("第一章 总则与工作时间", [
        "本手册适用于云杉数据科技有限公司（以下简称“公司”）全体正式员工和试用期员工，自2024年1月1日起施行，"
        "原2021年版手册同时废止。本手册未尽事宜，以国家法律法规和公司另行发布的制度为准。",
        "<b>工作时间。</b>公司实行每周五天、每天8小时工作制。标准上班时间为上午9:00至下午18:00，"
        "午休时间为12:00至13:00。研发部门可实行弹性工作制，上班打卡时间可在8:30至10:00之间，"
        "但每天须在岗满8小时，且10:00至16:00为核心工作时段。",
        "<b>考勤。</b>员工上下班须在公司门禁系统或“云杉办公”应用中打卡。迟到或早退15分钟以内的，"
        "每月累计不超过3次不扣工资；迟到超过30分钟且未提前请假的，按事假半天处理。"
        "因公外出不能打卡的，须在当天内提交外出说明，由直属主管审批。",
        "<b>试用期。</b>新员工试用期一般为3个月，经理级及以上岗位为6个月。试用期满前10个工作日，"
        "人力资源部组织转正评估，评估结果分为“通过”“延期”和“不通过”三种；延期最多一次，"
        "且试用期总长不超过6个月。",
    ]),
    ("第二章 休假制度", [
        "<b>带薪年假。</b>员工在公司连续工作满1年后享受带薪年假。第一年为7天，此后每多工作满1年增加1天，"
        "最多不超过15天。年假须至少提前5个工作日在“云杉办公”应用中申请，连续休假超过5天的须由部门负责人审批。"
        "当年未休完的年假可以结转至次年3月31日，逾期作废，不折算工资。",
        "<b>病假。</b>员工每年享有12天全薪病假，须提供二级及以上医院出具的诊断证明；"
        "超过12天的部分按本人基本工资的80%发放。当天因病无法上班的，应在上午10:00前通知直属主管。",
        "<b>其他假期。</b>婚假15天（含法定婚假及公司奖励假），须在领取结婚证后一年内休完；"
        "产假158天，难产或多胞胎按国家规定增加；陪产假15天；丧假3天；"
        "每年的体检假为半天，体检费用由公司承担，标准为每人每年800元。",
        "<b>事假。</b>事假为无薪假期，每次原则上不超过3天，全年累计不超过10天。"
        "遇法定节假日调休时，以公司行政部发布的放假通知为准。",
    ]),
    ("第三章 差旅报销与信息安全", [
        "<b>差旅标准。</b>员工出差须事先在系统中提交出差申请。住宿费标准为：北京、上海、广州、深圳每晚不超过600元，"
        "其他城市每晚不超过450元。出差伙食补助为每天100元，按自然日计算，不需要提供发票。"
        "乘坐高铁可报销二等座，飞行时间超过4小时的航班可申请经济舱以外的舱位，须由副总裁批准。",
        "<b>报销流程。</b>费用报销须在费用发生之日起30天内提交，并附上抬头为“云杉数据科技有限公司”的合规发票。"
        "财务部每月10日和25日统一付款，报销款直接转入员工工资卡。超过90天未提交的费用原则上不予报销。",
        "<b>信息安全。</b>员工账号密码长度不少于12位，须每90天更换一次，不得与他人共用账号。"
        "公司笔记本电脑、手机或门禁卡遗失的，须在2小时内报告IT服务台（内线电话8000），"
        "以便及时冻结账号和远程清除数据。客户数据不得存储在个人网盘或未经批准的外部服务中。",
        "<b>手册的解释与修订。</b>本手册由人力资源部负责解释，每年12月评审一次。"
        "员工对本手册有疑问或建议的，可发送邮件至hr@yunshan.example。",
    ]),
]


def _footer(text: str, font: str):
    def draw(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.drawCentredString(doc.pagesize[0] / 2, 28, text.format(page=doc.page))
        canvas.restoreState()
    return draw


def _story(pages, styles, table=None) -> list:
    from reportlab.lib import colors
    from reportlab.platypus import PageBreak, Paragraph, Spacer, Table, TableStyle

    story: list = []
    for n, (heading, paragraphs) in enumerate(pages):
        if n:
            story.append(PageBreak())
        story += [Paragraph(heading, styles["h"]), Spacer(1, 6)]
        for para in paragraphs:
            if para == "__TABLE__":
                t = Table(table, colWidths=[260, 160])
                t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                                       ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                                       ("FONTSIZE", (0, 0), (-1, -1), 10)]))
                story += [t, Spacer(1, 8)]
            else:
                story.append(Paragraph(para, styles["p"]))
    return story


def build(path: Path, title: str, pages, *, chinese: bool, table=None) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    if chinese:
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    font, bold = ("STSong-Light", "STSong-Light") if chinese else ("Helvetica", "Helvetica-Bold")
    wrap = "CJK" if chinese else None
    styles = {"p": ParagraphStyle("p", fontName=font, fontSize=10.5, leading=16, spaceAfter=8,
                                  wordWrap=wrap),
              "h": ParagraphStyle("h", fontName=bold, fontSize=14, leading=20, wordWrap=wrap),
              "t": ParagraphStyle("t", fontName=bold, fontSize=17, leading=24, spaceAfter=10,
                                  wordWrap=wrap)}
    footer = (f"{title} - 第{{page}}页，共{len(pages)}页" if chinese
              else f"{title} - page {{page}} of {len(pages)}")
    doc = SimpleDocTemplate(str(path), pagesize=A4, title=title, author="demo", invariant=True,
                            leftMargin=64, rightMargin=64, topMargin=60, bottomMargin=60)
    story = [Paragraph(title, styles["t"])] + _story(pages, styles, table)
    doc.build(story, onFirstPage=_footer(footer, font), onLaterPages=_footer(footer, font))


def check(path: Path, pages, must_contain: list[str]) -> None:
    """pypdf must give back the text: each page's heading on that page, plus the key facts."""
    from pypdf import PdfReader

    texts = [p.extract_text() for p in PdfReader(path).pages]
    assert len(texts) == len(pages), f"{path.name}: {len(texts)} pages, expected {len(pages)}"
    for n, ((heading, _), text) in enumerate(zip(pages, texts), 1):
        assert heading in text, f"{path.name} page {n}: heading {heading!r} not extracted"
    flat = "".join("".join(t.split()) for t in texts)
    missing = [s for s in must_contain if "".join(s.split()) not in flat]
    assert not missing, f"{path.name}: not extracted: {missing}"
    print(f"{path.name}: {len(texts)} pages, {path.stat().st_size / 1024:.1f} KB, text checked")


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    en, zh = DOCS / "nordhaven_hv320_manual.pdf", DOCS / "yunshan_employee_handbook.pdf"
    build(en, EN_TITLE, EN_PAGES, chinese=False, table=EN_SCHEDULE)
    build(zh, ZH_TITLE, ZH_PAGES, chinese=True)
    check(en, EN_PAGES, ["restocking fee of 15 percent", "Every 12 months", "0800 555 0132"])
    check(zh, ZH_PAGES, ["第一年为7天", "结转至次年3月31日", "每晚不超过600元", "内线电话8000"])


if __name__ == "__main__":
    main()
